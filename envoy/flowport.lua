-- Listed before the gRPC-JSON transcoder, so it sees requests before transcoding and
-- responses after it. It touches headers only: reading a body would buffer SSE streams.

-- Tells the service whether a call came in as REST/JSON (transcoded) or as native gRPC,
-- so that errors can be rendered for the surface the client speaks.
function envoy_on_request(handle)
  local headers = handle:headers()
  -- gRPC metadata keys are [0-9a-z_.-]; HTTP allows more (`&`, `!`, `#`...), and grpc's core
  -- refuses the whole call for one such header. None of them means anything to Flowport.
  local illegal = {}
  for name, _ in pairs(headers) do
    if string.sub(name, 1, 1) ~= ":" and not string.find(name, "^[0-9a-z_.-]+$") then
      table.insert(illegal, name)
    end
  end
  for _, name in ipairs(illegal) do
    headers:remove(name)
  end
  local content_type = headers:get("content-type") or ""
  if string.sub(content_type, 1, 16) == "application/grpc" then
    headers:remove("x-flowport-surface")
  else
    headers:replace("x-flowport-surface", "rest")
  end
end

-- The transcoder can only map gRPC codes through a fixed table; the service asks for the status
-- of its own table (services/flowport/statuses.py) in an `x-http-status` header instead:
-- - FlowAI's and LinkAI's routes (HttpBody) answer OK with the error body, the header in the
--   initial metadata.
-- - The typed and management routes end with the error status, the header in its trailers.
--   An error before any message is a trailers-only response, whose trailers are the response
--   headers: the transcoder (convert_grpc_status) prints the google.rpc.Status body into them
--   and passes them on, header included, to this filter. Trailers after a message reach here
--   only as trailers, which this filter must not read (that would buffer SSE streams).
function envoy_on_response(handle)
  local headers = handle:headers()
  local status = headers:get("x-http-status")
  if status ~= nil then
    headers:replace(":status", status)
    headers:remove("x-http-status")
  end
  local content_type = headers:get("content-type") or ""
  if string.sub(content_type, 1, 16) ~= "application/grpc" then
    headers:remove("grpc-status")
    headers:remove("grpc-message")
    headers:remove("grpc-accept-encoding")
    headers:remove("grpc-status-details-bin")
  end
end
