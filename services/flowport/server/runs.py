"""Runs: the record of one run and its nodes, cancelling it, and its events."""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from datetime import datetime

import grpc
from google.api import httpbody_pb2

from flowport import cancelling
from flowport.errors import InvalidArgument
from flowport.run_record import run_message
from flowport.server.context import Services
from flowport.server.status import translate_errors
from flowport.storage import FINAL_STATUSES, LIVE_STATUSES, deliveries, get_run, list_runs
from flowport.v1 import runs_pb2, runs_pb2_grpc

SSE = "text/event-stream"
# Runs per page of ListRuns, unless the call asks for another number up to the most.
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
_TOKEN_PREFIX = b"runs:"
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
    async def ListRuns(
        self, request: runs_pb2.ListRunsRequest, context: grpc.aio.ServicerContext
    ) -> runs_pb2.ListRunsResponse:
        caller = await self._services.caller(context)
        if not 0 <= request.page_size <= MAX_PAGE_SIZE:
            raise InvalidArgument.at("page_size", f"must be between 1 and {MAX_PAGE_SIZE}")
        statuses = (*LIVE_STATUSES, *FINAL_STATUSES)
        if request.status and request.status not in statuses:
            raise InvalidArgument.at("status", f"must be one of {', '.join(statuses)}")
        after, before = _moment("after", request.after), _moment("before", request.before)
        cursor = _read_token(request.page_token) if request.page_token else None
        runs, following = await self._services.db.run(
            lambda session: list_runs(
                session,
                account_id=caller.account_id,
                limit=request.page_size or DEFAULT_PAGE_SIZE,
                workflow_id=request.workflow_id or None,
                status=request.status or None,
                after=after,
                before=before,
                cursor=cursor,
            )
        )
        return runs_pb2.ListRunsResponse(
            runs=[run_message(run, ()) for run in runs],
            next_page_token="" if following is None else _token(*following),
        )

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


def _moment(field: str, text: str) -> datetime | None:
    """An RFC 3339 time with its offset (`2026-12-07T10:00:00Z`); None when empty."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InvalidArgument.at(field, "must be an RFC 3339 time such as 2026-12-07T10:00:00Z")
    return moment


def _token(started_at: datetime, run_id: str) -> str:
    """Opaque to clients: what it holds may change without notice."""
    raw = _TOKEN_PREFIX + f"{started_at.isoformat()}|{run_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _read_token(token: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        started, _, run_id = raw.removeprefix(_TOKEN_PREFIX).decode().partition("|")
        if raw.startswith(_TOKEN_PREFIX) and run_id:
            moment = datetime.fromisoformat(started)
            if moment.tzinfo is not None:
                return moment, run_id
    except (binascii.Error, ValueError):
        pass
    raise InvalidArgument.at("page_token", "not a token this call gave")
