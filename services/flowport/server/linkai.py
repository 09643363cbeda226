"""LinkAi: LinkAI's run route, its envelope and status codes written through Envoy."""

from __future__ import annotations

import grpc
from google.api import httpbody_pb2

from flowport import linkai, statuses
from flowport.server import run_calls
from flowport.server.context import Services
from flowport.server.status import as_flowport_error, error_headers
from flowport.v1 import linkai_pb2, linkai_pb2_grpc

JSON = "application/json"


class LinkAiServicer(linkai_pb2_grpc.LinkAiServicer):
    def __init__(self, services: Services) -> None:
        self._services = services

    async def RunApp(
        self, request: linkai_pb2.RunAppRequest, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        services = self._services
        # The version that runs, once known: every answer after that says it.
        ran: run_calls.Metadata = ()
        try:
            body = linkai.parse_request(request.body.data)
            caller, key = await run_calls.run_caller(services, context)
            admitted = await run_calls.admit_once(
                services,
                caller,
                key,
                ("linkai", request.body.data),
                lambda run_id: services.admission.admit(
                    caller,
                    workflow_id=body.app_code,
                    raw_input=body.args,
                    session_id=body.session_id,
                    map_input=linkai.map_args,
                    mode=body.mode,
                    webhook_url=body.webhook_url,
                    run_id=run_id,
                    version=body.version,
                ),
                workflow_id=body.app_code,
            )
            ran = run_calls.version_header(
                await run_calls.version_of(services, admitted, caller.account_id)
            )
            if body.mode == "async":
                await context.send_initial_metadata(
                    run_calls.accepted_headers(admitted.run_id) + ran
                )
                return httpbody_pb2.HttpBody(
                    content_type=JSON,
                    data=linkai.accepted_body(run_calls.accepted(admitted.run_id)),
                )
            result, session_id = await run_calls.outcome(
                services, admitted, caller.account_id, detached=key is not None
            )
        except Exception as error:
            # Every failure, expected or not, is answered in LinkAI's envelope.
            known = as_flowport_error(error)
            # Envoy's Lua filter turns this header into the response's status: LinkAI's code.
            code = statuses.of(known).linkai
            await context.send_initial_metadata(
                (("x-http-status", str(code)), *error_headers(known), *ran)
            )
            return httpbody_pb2.HttpBody(content_type=JSON, data=linkai.error_body(known))
        await context.send_initial_metadata(ran)
        return httpbody_pb2.HttpBody(
            content_type=JSON,
            data=linkai.success_body(
                output_text=result.output, session_id=session_id, run_id=result.run_id
            ),
        )
