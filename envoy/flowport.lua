-- Listed before the gRPC-JSON transcoder, so it sees requests before transcoding and
-- responses after it. It touches headers only: reading a body would buffer SSE streams.
-- flowport.envoy writes it preceded by ROUTES, the REST routes and the query parameters
-- each takes, read from the protos' google.api.http annotations (flowport.routes).

-- A query parameter's name as the transcoder reads it: %XX decoded.
local function unescape(text)
  return (string.gsub(text, "%%(%x%x)", function(hex)
    return string.char(tonumber(hex, 16))
  end))
end

-- A name shown in an error as sent, any character but letters, digits and `_.-%` encoded:
-- LinkAI's reply puts it in JSON that Envoy cannot escape.
local function shown(name)
  return (string.gsub(name, "[^%w_.%-%%]", function(char)
    return string.format("%%%02X", string.byte(char))
  end))
end

-- The transcoder sets any request field from a query parameter of its name, so that
-- `?workflow_id=B` would run B on B's path of A. Only the parameters a route documents pass;
-- the message refusing any other, or nil. Unknown paths pass (the transcoder answers 404).
local function query_refusal(method, path)
  local mark = string.find(path, "?", 1, true)
  if mark == nil then
    return nil
  end
  local route_path = string.sub(path, 1, mark - 1)
  for _, route in ipairs(ROUTES) do
    if route.method == method and string.find(route_path, route.pattern) then
      for pair in string.gmatch(string.sub(path, mark + 1), "[^&]+") do
        local raw = string.match(pair, "^[^=]*")
        if not route.query[unescape(raw)] then
          local taken = {}
          for name, _ in pairs(route.query) do
            table.insert(taken, name)
          end
          table.sort(taken)
          local accepted = #taken == 0 and "no query parameters" or table.concat(taken, ", ")
          return string.format(
            "query parameter %s is not accepted by %s %s (it takes %s)",
            shown(raw), method, route.template, accepted
          )
        end
      end
      return nil
    end
  end
  return nil
end

local DEFAULT_PORTS = {http = "80", https = "443"}

-- The origin of a browser's cross-origin call, or nil for a same-origin call (the console's
-- pages) and for a call without Origin (servers, curl): the service then holds the call to
-- the allowed origins of its key's account (services/flowport/cors.py).
local function cross_origin(headers)
  local origin = headers:get("origin")
  if origin == nil or origin == "" then
    return nil
  end
  local scheme, hostport = string.match(string.lower(origin), "^(%a[%w+.-]*)://([^/]+)$")
  local authority = string.lower(headers:get(":authority") or "")
  if hostport == nil then
    return origin
  end
  local default = DEFAULT_PORTS[scheme]
  if hostport == authority or (default ~= nil and hostport .. ":" .. default == authority) then
    return nil
  end
  return origin
end

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
  local origin = cross_origin(headers)
  if origin ~= nil then
    headers:replace("x-flowport-origin", origin)
  else
    headers:remove("x-flowport-origin")
  end
  local content_type = headers:get("content-type") or ""
  if string.sub(content_type, 1, 16) == "application/grpc" then
    headers:remove("x-flowport-surface")
  else
    headers:replace("x-flowport-surface", "rest")
    local refusal = query_refusal(headers:get(":method"), headers:get(":path"))
    if refusal ~= nil then
      -- A local reply: local_reply_config puts it in the route's own error body.
      handle:respond({[":status"] = "400", ["content-type"] = "text/plain"}, refusal)
    end
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
