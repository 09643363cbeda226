"""Runs: the record of one run and its nodes, cancelling it, and its events."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from google.api import httpbody_pb2

from flowport import cancelling
from flowport.errors import InvalidArgument
from flowport.server.context import Services
from flowport.server.convert import struct, timestamp
from flowport.server.status import translate_errors
from flowport.storage import NodeRun, Run, get_run
from flowport.v1 import runs_pb2, runs_pb2_grpc

SSE = "text/event-stream"
# Proxies further out must neither cache nor buffer the stream.
SSE_HEADERS = (("cache-control", "no-cache"), ("x-accel-buffering", "no"))


class RunsServicer(runs_pb2_grpc.RunsServicer):
    def __init__(self, services: Services) -> None:
        self._services = services

    @translate_errors
    async def GetRun(
        self, request: runs_pb2.GetRunRequest, context: grpc.aio.ServicerContext
    ) -> runs_pb2.Run:
        caller = await self._services.caller(context)
        run, nodes = await self._services.db.run(
            lambda session: get_run(session, account_id=caller.account_id, run_id=request.run_id)
        )
        return _run_message(run, nodes)

    @translate_errors
    async def CancelRun(
        self, request: runs_pb2.CancelRunRequest, context: grpc.aio.ServicerContext
    ) -> runs_pb2.Run:
        caller = await self._services.caller(context)
        services = self._services
        run, nodes = await cancelling.cancel(
            account_id=caller.account_id,
            run_id=request.run_id,
            db=services.db,
            execution=services.execution,
            replica=services.replica,
        )
        return _run_message(run, nodes)

    @translate_errors
    async def StreamRunEvents(
        self, request: runs_pb2.StreamRunEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[httpbody_pb2.HttpBody]:
        caller = await self._services.caller(context)
        frames = self._services.run_log.follow(
            account_id=caller.account_id,
            run_id=request.run_id,
            after=_last_event_id(context) or request.after,
        )
        # The first frames (or the NotFound) before any header: a refused call is a plain
        # HTTP error, not an empty stream.
        first = await anext(frames, b"")
        await context.send_initial_metadata(SSE_HEADERS)
        # Even with nothing to send (the client had every frame), the first message gives
        # the answer its Content-Type.
        yield httpbody_pb2.HttpBody(content_type=SSE, data=first)
        async for data in frames:
            yield httpbody_pb2.HttpBody(content_type=SSE, data=data)


def _last_event_id(context: grpc.aio.ServicerContext) -> int:
    """The id in a `Last-Event-ID` header (an SSE client reconnecting sends it), or 0."""
    for name, value in context.invocation_metadata() or ():
        if name == "last-event-id" and isinstance(value, str) and value.strip():
            text = value.strip()
            # ASCII digits only: int() would also read other scripts' digits.
            if not (text.isascii() and text.isdigit()):
                raise InvalidArgument.at("Last-Event-ID", "must be a whole number, a frame's id")
            return int(text)
    return 0


def _run_message(run: Run, nodes: list[NodeRun]) -> runs_pb2.Run:
    return runs_pb2.Run(
        id=run.id,
        workflow_id=run.workflow_id,
        version=run.version,
        status=run.status,
        inputs=struct(run.inputs),
        output=run.output,
        error=run.error,
        error_node=run.error_node,
        total_time=run.total_time,
        session_id=run.session_id or "",
        started_at=timestamp(run.started_at),
        finished_at=timestamp(run.finished_at),
        nodes=[
            runs_pb2.NodeRun(
                node_id=node.node_id,
                name=node.name,
                type=node.node_type,
                status=node.status,
                time_spend=node.time_spend,
                started_at=timestamp(node.started_at),
                output=struct(_jsonable(node.output)),
                error=node.error,
            )
            for node in nodes
        ],
    )


def _jsonable(output: object) -> dict | None:
    """Node outputs are stored as JSON objects; anything else is wrapped to fit a Struct."""
    if output is None or isinstance(output, dict):
        return output
    return {"output": output}
