"""FlowAi: FlowAI's run route, blocking JSON or SSE, written as raw bytes through Envoy."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from google.api import httpbody_pb2

from flowport import flowai, statuses
from flowport.idempotency import Repeat
from flowport.run_log import PING
from flowport.server import run_calls
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
        services = self._services
        try:
            body = flowai.parse_request(request.body.data)
            caller, key = await run_calls.run_caller(services, context)
            admitted = await run_calls.admit_once(
                services,
                caller,
                key,
                ("flowai", request.workflow_id, request.body.data),
                lambda run_id: services.admission.admit(
                    caller,
                    workflow_id=request.workflow_id,
                    raw_input=body.input,
                    session_id=body.session_id,
                    mode=body.mode,
                    webhook_url=body.webhook_url,
                    run_id=run_id,
                    version=body.version,
                ),
                workflow_id=request.workflow_id,
            )
            ran = run_calls.version_header(
                await run_calls.version_of(services, admitted, caller.account_id)
            )
        except Exception as error:
            # Any failure before the run starts is a plain HTTP answer, never a broken stream.
            yield await _http_error(context, error)
            return

        run_id = admitted.run_id
        # A repeated call's session is on its run's record (its answer says it).
        session_id = None if isinstance(admitted, Repeat) else admitted.session_id
        if body.mode == "async":
            await context.send_initial_metadata(run_calls.accepted_headers(run_id) + ran)
            yield httpbody_pb2.HttpBody(
                content_type=JSON, data=flowai.dumps(run_calls.accepted(run_id))
            )
            return
        if body.mode == "blocking":
            try:
                result, session_id = await run_calls.outcome(
                    services, admitted, caller.account_id, detached=key is not None
                )
            except Exception as error:
                yield await _http_error(context, error, _run_headers(run_id, session_id) + ran)
                return
            await context.send_initial_metadata(_run_headers(run_id, session_id) + ran)
            yield httpbody_pb2.HttpBody(
                content_type=JSON, data=flowai.dumps(flowai.output_payload(result))
            )
            return

        if isinstance(admitted, Repeat):
            # The first call's stream again, from its log, with the frames' ids.
            await context.send_initial_metadata(SSE_HEADERS + _run_headers(run_id) + ran)
            async for data in run_calls.replayed(services, caller.account_id, run_id):
                yield httpbody_pb2.HttpBody(content_type=SSE, data=data)
            return
        await context.send_initial_metadata(SSE_HEADERS + _run_headers(run_id, session_id) + ran)
        live = services.execution.start(admitted, keep_going=key is not None)
        async for batch in live.follow(services.settings.stream_heartbeat_s):
            if batch is None:
                # A quiet spell: a comment keeps proxies from cutting the stream.
                yield httpbody_pb2.HttpBody(content_type=SSE, data=PING)
            elif batch.frames:
                # The frames of every event ready at once in one message: SSE is a byte
                # stream, so the client reads the same bytes, with one write, not many.
                yield httpbody_pb2.HttpBody(content_type=SSE, data=batch.data)


def _run_headers(run_id: str, session_id: str | None = None) -> Metadata:
    """The run's and session's ids as headers too: a streaming client can look its run up
    even if it never reads the final frame, and continue the session."""
    headers: Metadata = (("x-run-id", run_id),)
    return headers + ((("x-session-id", session_id),) if session_id else ())


async def _http_error(
    context: grpc.aio.ServicerContext, error: Exception, headers: Metadata = ()
) -> httpbody_pb2.HttpBody:
    """A failure before the stream began: a plain HTTP error with the documented body."""
    known = as_flowport_error(error)
    # Envoy's Lua filter turns this header into the response's status.
    status = (("x-http-status", str(statuses.of(known).rest)),)
    await context.send_initial_metadata(status + error_headers(known) + headers)
    return httpbody_pb2.HttpBody(content_type=JSON, data=flowai.error_body(known))
