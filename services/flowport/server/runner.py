"""WorkflowRunner: typed Run and RunStream for gRPC clients, over the one run path."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from google.protobuf import json_format

from flowport import jsonbody, run_record, statuses
from flowport.admission import PreparedRun
from flowport.auth import Principal
from flowport.convert import from_struct, struct
from flowport.engine import (
    NodeFinished,
    NodeStarted,
    RunEvent,
    RunFailed,
    RunStarted,
    RunSucceeded,
    Token,
)
from flowport.engine.llm import TokenUsage
from flowport.errors import InvalidArgument
from flowport.idempotency import Repeat
from flowport.modes import Mode
from flowport.run_log import composed_events
from flowport.server import run_calls
from flowport.server.context import Services
from flowport.server.status import translate_errors
from flowport.storage import get_run
from flowport.v1 import runner_pb2, runner_pb2_grpc


class WorkflowRunnerServicer(runner_pb2_grpc.WorkflowRunnerServicer):
    def __init__(self, services: Services) -> None:
        self._services = services

    async def _admit(
        self,
        request: runner_pb2.RunRequest | runner_pb2.RunStreamRequest,
        context: grpc.aio.ServicerContext,
        *,
        mode: Mode,
    ) -> tuple[PreparedRun | Repeat, Principal, bool]:
        """Run and RunStream carry the same fields and go through the same checks; the run,
        the caller, and whether the call has an Idempotency-Key (its run is detached)."""
        services = self._services
        webhook_url = jsonbody.optional_webhook_url({"webhook_url": request.webhook_url})
        version = jsonbody.pin(_pin_value(request))
        caller, key = await run_calls.run_caller(services, context)
        admitted = await run_calls.admit_once(
            services,
            caller,
            key,
            (type(request).__name__, request.SerializeToString(deterministic=True)),
            lambda run_id: services.admission.admit(
                caller,
                workflow_id=request.workflow_id,
                raw_input=from_struct(request.input),
                session_id=request.session_id or None,
                mode=mode,
                webhook_url=webhook_url,
                run_id=run_id,
                version=version,
            ),
            workflow_id=request.workflow_id,
        )
        return admitted, caller, key is not None

    @translate_errors
    async def Run(
        self, request: runner_pb2.RunRequest, context: grpc.aio.ServicerContext
    ) -> runner_pb2.RunResponse:
        mode = _run_mode(request.mode)
        admitted, caller, keyed = await self._admit(request, context, mode=mode)
        accepted = run_calls.accepted(admitted.run_id)
        version = await run_calls.version_of(self._services, admitted, caller.account_id)
        if mode == "async":
            await context.send_initial_metadata(
                run_calls.accepted_metadata(context, admitted.run_id)
            )
            return runner_pb2.RunResponse(
                run_id=admitted.run_id,
                session_id=await self._session_of(admitted, caller.account_id),
                status=accepted["status"],
                events_url=accepted["events_url"],
                version=version,
            )
        result, session_id = await run_calls.outcome(
            self._services, admitted, caller.account_id, detached=keyed
        )
        return runner_pb2.RunResponse(
            output=result.output,
            total_time=result.total_time,
            run_id=result.run_id,
            session_id=session_id,
            usage=usage_message(result.usage),
            status="succeeded",
            # A finished run's events are there too, composed from its record.
            events_url=accepted["events_url"],
            version=version,
        )

    async def _session_of(self, admitted: PreparedRun | Repeat, account_id: str) -> str:
        """The run's session: a repeated call's is on its run's record."""
        if isinstance(admitted, PreparedRun):
            return admitted.session_id
        record, _ = await self._services.db.run(
            lambda s: get_run(s, account_id=account_id, run_id=admitted.run_id)
        )
        return record.session_id or ""

    @translate_errors
    async def RunStream(
        self, request: runner_pb2.RunStreamRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[runner_pb2.RunStreamResponse]:
        admitted, caller, keyed = await self._admit(request, context, mode="stream")
        version = await run_calls.version_of(self._services, admitted, caller.account_id)
        if isinstance(admitted, Repeat):
            async for event, session_id in self._repeated(caller.account_id, admitted.run_id):
                yield _event(event, session_id=session_id, version=version)
            return
        live = self._services.execution.start(admitted, keep_going=keyed)
        # gRPC keeps a quiet stream alive itself (HTTP/2): a heartbeat here is nothing to send.
        async for batch in live.follow(self._services.settings.stream_heartbeat_s):
            for event in batch.events if batch is not None else ():
                yield _event(event, session_id=admitted.session_id, version=version)

    async def _repeated(self, account_id: str, run_id: str) -> AsyncIterator[tuple[RunEvent, str]]:
        """A repeated RunStream's events: the first call's run followed while it executes
        here, else (once it has ended) its events composed from its record."""
        live = self._services.execution.live(run_id)
        if live is not None:
            session = await self._services.db.run(
                lambda s: get_run(s, account_id=account_id, run_id=run_id)
            )
            async for batch in live.follow(self._services.settings.stream_heartbeat_s):
                for event in batch.events if batch is not None else ():
                    yield event, session[0].session_id or ""
            return
        record, nodes = await self._services.idempotency.ended(account_id, run_id)
        for event in (*composed_events(record, nodes), run_record.outcome(record, nodes)):
            yield event, record.session_id or ""


def _pin_value(request: runner_pb2.RunRequest | runner_pb2.RunStreamRequest) -> object:
    """The `version` field as JSON would have it: a number, a string, or None when unset."""
    if not request.HasField("version"):
        return None
    return json_format.MessageToDict(request.version)


def _run_mode(mode: str) -> Mode:
    """RunRequest's mode: empty or "blocking" runs to the end, "async" in the background."""
    if mode in ("", "blocking"):
        return "blocking"
    if mode == "async":
        return "async"
    raise InvalidArgument.at("mode", 'must be "blocking" or "async" (or empty)')


def _event(event: RunEvent, *, session_id: str, version: int) -> runner_pb2.RunStreamResponse:
    match event:
        case RunStarted():
            return runner_pb2.RunStreamResponse(
                run_started=runner_pb2.RunStarted(
                    run_id=event.run_id,
                    node_id=event.node_id,
                    input=struct(event.inputs),
                    session_id=session_id,
                    version=version,
                )
            )
        case NodeStarted():
            return runner_pb2.RunStreamResponse(
                node_started=runner_pb2.NodeStarted(
                    node_id=event.node_id, name=event.name, type=event.type
                )
            )
        case NodeFinished():
            return runner_pb2.RunStreamResponse(
                node_finished=runner_pb2.NodeFinished(
                    node_id=event.node_id,
                    name=event.name,
                    type=event.type,
                    status=event.status,
                    time_spend=event.time_spend,
                    error=event.error,
                )
            )
        case Token():
            return runner_pb2.RunStreamResponse(
                token=runner_pb2.TokenChunk(
                    node_id=event.node_id, content=event.content, reasoning=event.reasoning
                )
            )
        case RunSucceeded():
            return runner_pb2.RunStreamResponse(
                output=runner_pb2.RunOutput(
                    output=event.output,
                    total_time=event.total_time,
                    run_id=event.run_id,
                    session_id=session_id,
                    usage=usage_message(event.usage),
                )
            )
        case RunFailed():
            return runner_pb2.RunStreamResponse(
                error=runner_pb2.RunError(
                    node_id=event.node_id,
                    # The REST status, as in FlowAI's error frames: the stream itself ends OK.
                    code=statuses.of(event.error).rest,
                    message=event.error.message,
                    run_id=event.run_id,
                )
            )
    raise TypeError(f"unknown run event {event!r}")


def usage_message(usage: TokenUsage | None) -> runner_pb2.Usage | None:
    """The run's token usage; None leaves the field unset (the run called no LLM)."""
    return None if usage is None else runner_pb2.Usage(**usage)
