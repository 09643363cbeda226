"""FlowAi: FlowAI's run route, blocking JSON or SSE, written as raw bytes through Envoy."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from google.api import httpbody_pb2

from flowport import flowai, statuses
from flowport.run_log import PING
from flowport.server.context import Services
from flowport.server.status import as_flowport_error, error_headers
from flowport.v1 import flowai_pb2, flowai_pb2_grpc

JSON = "application/json"
SSE = "text/event-stream"
# Proxies further out must neither cache nor buffer the stream.
SSE_HEADERS = (("cache-control", "no-cache"), ("x-accel-buffering", "no"))

Metadata = tuple[tuple[str, str], ...]


class FlowAiServicer(flowai_pb2_grpc.FlowAiServicer):
    def __init__(self, services: Services) -> None:
        self._services = services

    async def RunWorkflow(
        self, request: flowai_pb2.RunWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[httpbody_pb2.HttpBody]:
        execution = self._services.execution
        try:
            body = flowai.parse_request(request.body.data)
            caller = await self._services.caller(context)
            run = await self._services.admission.admit(
                caller,
                workflow_id=request.workflow_id,
                raw_input=body.input,
                session_id=body.session_id,
                blocking=not body.stream,
            )
        except Exception as error:
            # Any failure before the run starts is a plain HTTP answer, never a broken stream.
            yield await _http_error(context, error)
            return

        # The run's and session's ids as headers too: a streaming client can look its run up
        # even if it never reads the final frame, and continue the session.
        run_header = (("x-run-id", run.run_id), ("x-session-id", run.session_id))
        if not body.stream:
            try:
                result = await execution.run_to_end(run)
            except Exception as error:
                yield await _http_error(context, error, run_header)
                return
            await context.send_initial_metadata(run_header)
            yield httpbody_pb2.HttpBody(
                content_type=JSON, data=flowai.dumps(flowai.output_payload(result))
            )
            return

        await context.send_initial_metadata(SSE_HEADERS + run_header)
        live = execution.start(run)
        async for batch in live.follow(self._services.settings.stream_heartbeat_s):
            if batch is None:
                # A quiet spell: a comment keeps proxies from cutting the stream.
                yield httpbody_pb2.HttpBody(content_type=SSE, data=PING)
            elif batch.frames:
                # The frames of every event ready at once in one message: SSE is a byte
                # stream, so the client reads the same bytes, with one write, not many.
                yield httpbody_pb2.HttpBody(content_type=SSE, data=batch.data)


async def _http_error(
    context: grpc.aio.ServicerContext, error: Exception, headers: Metadata = ()
) -> httpbody_pb2.HttpBody:
    """A failure before the stream began: a plain HTTP error with the documented body."""
    known = as_flowport_error(error)
    # Envoy's Lua filter turns this header into the response's status.
    status = (("x-http-status", str(statuses.of(known).rest)),)
    await context.send_initial_metadata(status + error_headers(known) + headers)
    return httpbody_pb2.HttpBody(content_type=JSON, data=flowai.error_body(known))
