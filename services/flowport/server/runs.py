"""Runs: the record of one run and its nodes, cancelling it, and its events."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from google.api import httpbody_pb2

from flowport import cancelling
from flowport.errors import InvalidArgument
from flowport.run_record import run_message
from flowport.server.context import Services
from flowport.server.status import translate_errors
from flowport.storage import deliveries, get_run
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
        db = self._services.db
        run, nodes = await db.run(
            lambda session: get_run(session, account_id=caller.account_id, run_id=request.run_id)
        )
        sent = await db.run(lambda session: deliveries(session, run_id=run.id))
        return run_message(run, nodes, sent)

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
            webhooks=services.webhooks,
        )
        sent = await services.db.run(lambda session: deliveries(session, run_id=run.id))
        return run_message(run, nodes, sent)

    @translate_errors
    async def StreamRunEvents(
        self, request: runs_pb2.StreamRunEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[httpbody_pb2.HttpBody]:
        caller = await self._services.caller(context)
        if request.after < 0:
            raise InvalidArgument.at("after", "must be a whole number, a frame's id")
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
