"""WorkflowRunner: typed Run and RunStream for gRPC clients, over the one run path."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from flowport import statuses
from flowport.admission import PreparedRun
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
from flowport.server.context import Services
from flowport.server.convert import from_struct, struct
from flowport.server.status import translate_errors
from flowport.v1 import runner_pb2, runner_pb2_grpc


class WorkflowRunnerServicer(runner_pb2_grpc.WorkflowRunnerServicer):
    def __init__(self, services: Services) -> None:
        self._services = services

    async def _prepare(
        self,
        request: runner_pb2.RunRequest | runner_pb2.RunStreamRequest,
        context: grpc.aio.ServicerContext,
        *,
        blocking: bool,
    ) -> PreparedRun:
        """Run and RunStream carry the same fields and go through the same checks."""
        caller = await self._services.caller(context)
        return await self._services.admission.admit(
            caller,
            workflow_id=request.workflow_id,
            raw_input=from_struct(request.input),
            session_id=request.session_id or None,
            blocking=blocking,
        )

    @translate_errors
    async def Run(
        self, request: runner_pb2.RunRequest, context: grpc.aio.ServicerContext
    ) -> runner_pb2.RunResponse:
        run = await self._prepare(request, context, blocking=True)
        result = await self._services.execution.run_to_end(run)
        return runner_pb2.RunResponse(
            output=result.output,
            total_time=result.total_time,
            run_id=result.run_id,
            session_id=run.session_id,
            usage=usage_message(result.usage),
        )

    @translate_errors
    async def RunStream(
        self, request: runner_pb2.RunStreamRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[runner_pb2.RunStreamResponse]:
        run = await self._prepare(request, context, blocking=False)
        live = self._services.execution.start(run)
        # gRPC keeps a quiet stream alive itself (HTTP/2): a heartbeat here is nothing to send.
        async for batch in live.follow(self._services.settings.stream_heartbeat_s):
            for event in batch.events if batch is not None else ():
                yield _event(event, session_id=run.session_id)


def _event(event: RunEvent, *, session_id: str) -> runner_pb2.RunStreamResponse:
    match event:
        case RunStarted():
            return runner_pb2.RunStreamResponse(
                run_started=runner_pb2.RunStarted(
                    run_id=event.run_id,
                    node_id=event.node_id,
                    input=struct(event.inputs),
                    session_id=session_id,
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
