"""Execution: admitted runs executing on this replica. One path for every surface: `Run`,
`RunStream`, FlowAI's and LinkAI's routes all drain `batches`, which renders each batch's
frames once, logs them, checks outputs against the content policy, and records the
outcome before the last batch leaves."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from flowport import flowai
from flowport.admission import PreparedRun
from flowport.engine import (
    LlmClient,
    NodeFinished,
    RunEvent,
    RunFailed,
    RunSucceeded,
    Token,
    execute,
)
from flowport.engine.runner import events_of
from flowport.errors import Cancelled, ContentBlocked, FlowportError, NotFound
from flowport.outbound import Outbound
from flowport.policy import ContentPolicy
from flowport.run_log import LiveLog
from flowport.storage import Database, LogEntry, NodeRunRecord, Recorder, get_run

CANCELLED_BY_REQUEST = "the run was cancelled by a cancel request"
CANCELLED_BY_CLIENT = "the run was cancelled: the client went away"
TOKEN_FRAME = b"event: stream\n"


@dataclass(slots=True)
class Batch:
    """Events that happened together, and the FlowAI frames of those that show, numbered
    from `first_seq`. Empty when the run was quiet for a heartbeat interval."""

    events: list[RunEvent]
    frames: list[bytes]
    first_seq: int

    @property
    def data(self) -> bytes:
        """The frames as FlowAI's stream writes them (no id lines)."""
        return b"".join(self.frames)


@dataclass(slots=True)
class _ActiveRun:
    """A run executing here: the task draining its events (which a cancel call cancels),
    whether that is what happened, its frames for followers here, and whether followers
    on other replicas want notices of its new frames."""

    task: asyncio.Task[Any] | None
    log: LiveLog
    cancel_requested: bool = False
    watched: bool = False
    finished: asyncio.Event = field(default_factory=asyncio.Event)


class Execution:
    def __init__(
        self,
        *,
        db: Database,
        recorder: Recorder,
        llm: LlmClient | None,
        outbound: Outbound,
        policy: ContentPolicy,
        default_model: str,
        heartbeat_s: float,
        log_max_bytes: int,
    ) -> None:
        self._db = db
        self._log_max_bytes = log_max_bytes
        self._recorder = recorder
        self._llm = llm
        self._outbound = outbound
        self._policy = policy
        self._default_model = default_model
        self._heartbeat_s = heartbeat_s
        # Runs executing here, by id, so cancel calls and followers can reach them.
        self._active: dict[str, _ActiveRun] = {}

    def live_log(self, run_id: str) -> LiveLog | None:
        active = self._active.get(run_id)
        return None if active is None else active.log

    def watch(self, run_id: str) -> None:
        """A follower on another replica wants notices of the run's new frames."""
        active = self._active.get(run_id)
        if active is not None:
            active.watched = True

    def watched(self, run_ids: list[str]) -> list[str]:
        """Those of `run_ids` that followers on other replicas watch."""
        return [
            run_id
            for run_id in run_ids
            if (active := self._active.get(run_id)) is not None and active.watched
        ]

    async def batches(self, run: PreparedRun) -> AsyncGenerator[Batch, None]:
        """The run's events as they happen, in the engine's batches. The outcome is recorded
        before the last batch is yielded, so a run acknowledged to the client is on record;
        a consumer that stops early (the client went away) leaves the run recorded as
        cancelled."""
        nodes: list[NodeRunRecord] = []
        recorded = False
        started = time.perf_counter()
        # Each llm node's text so far: a blocked word is caught as soon as it is generated.
        generated: dict[str, str] = {}
        log = LiveLog()
        active = _ActiveRun(task=asyncio.current_task(), log=log)
        self._active[run.run_id] = active
        # Frames rendered but not yet handed to the recorder: the last ones go with the end.
        unlogged: list[bytes] = []
        try:
            async with aclosing(
                execute(
                    run.workflow,
                    run_id=run.run_id,
                    inputs=run.inputs,
                    session_id=run.session_id,
                    llm=self._llm,
                    default_model=self._default_model,
                    history=run.history,
                    load_workflow=run.load_workflow,
                    outbound=self._outbound,
                    # An active content policy watches each token as it comes, so that a
                    # blocked word stops the run before later nodes pass it on.
                    live=not run.blocking or self._policy.active,
                    idle_s=None if run.blocking else self._heartbeat_s,
                )
            ) as stream:
                async for events in stream:
                    checked: list[RunEvent] = []
                    outcome: RunSucceeded | RunFailed | None = None
                    for event in events:
                        blocked = self._blocked(event, generated)
                        if blocked is not None:
                            event = RunFailed(
                                run_id=run.run_id,
                                node_id=blocked.node_id,
                                error=blocked,
                                total_time=time.perf_counter() - started,
                            )
                        checked.append(event)
                        if isinstance(event, NodeFinished):
                            nodes.append(_node_record(event))
                        elif isinstance(event, RunSucceeded | RunFailed):
                            outcome = event
                            break
                    batch = self._batch(checked, log, unlogged)
                    if outcome is not None:
                        # Set before the write: the recorder finishes it even if this task
                        # is cancelled while it waits, so no other outcome may follow.
                        recorded = True
                        batch = await self._record(run, outcome, nodes, batch, log, unlogged)
                        yield batch
                        # Leaving the block closes the engine: in-flight nodes are cancelled.
                        return
                    self._log_now(run.run_id, log, unlogged)
                    yield batch
        except asyncio.CancelledError:
            if not active.cancel_requested or active.task is None:
                raise
            # A cancel call, not the client leaving: the engine is closed by now, and the
            # client is still there to be told.
            active.task.uncancel()
            if recorded:
                # The run had ended as the call came: its outcome is the answer, once on
                # record (the call cut short this task's wait for that write, not the write).
                await self._recorder.flushed()
                yield batch
                return
            recorded = True
            cancelled = _cancelled(run, CANCELLED_BY_REQUEST, started)
            yield await self._record(
                run, cancelled, nodes, self._batch([cancelled], log, unlogged), log, unlogged
            )
        finally:
            del self._active[run.run_id]
            if not recorded:
                # The recorder finishes the write even though this task is being cancelled.
                cancelled = _cancelled(run, CANCELLED_BY_CLIENT, started)
                await self._record(
                    run, cancelled, nodes, self._batch([cancelled], log, unlogged), log, unlogged
                )
            log.end()
            active.finished.set()

    def events(self, run: PreparedRun) -> AsyncGenerator[RunEvent, None]:
        """The events of `batches`, one by one."""

        async def event_lists() -> AsyncGenerator[list[RunEvent], None]:
            async with aclosing(self.batches(run)) as batches:
                async for batch in batches:
                    yield batch.events

        return events_of(event_lists())

    async def run_to_end(self, run: PreparedRun) -> RunSucceeded:
        """Drains the same events a stream would send; a failed run raises its error."""
        async with aclosing(self.batches(run)) as batches:
            async for batch in batches:
                for event in batch.events:
                    if isinstance(event, RunSucceeded):
                        return event
                    if isinstance(event, RunFailed):
                        raise event.error
        raise FlowportError("the run ended without an outcome")

    async def cancel_here(self, run_id: str, *, wait_s: float = 5.0) -> bool:
        """Cancels a run executing on this replica and waits until its outcome is recorded.
        False if it is not executing here."""
        active = self._active.get(run_id)
        if active is None or active.task is None:
            return False
        active.cancel_requested = True
        active.task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(active.finished.wait(), wait_s)
        return True

    async def drain(self) -> None:
        """Waits for the writes of runs already ended (the service is stopping)."""
        await self._recorder.close()

    def _batch(self, events: list[RunEvent], log: LiveLog, unlogged: list[bytes]) -> Batch:
        frames = [frame for event in events if (frame := flowai.render_event(event)) is not None]
        first_seq = len(log.frames) + 1
        log.extend(frames)
        unlogged.extend(frames)
        return Batch(events, frames, first_seq)

    def _log_now(self, run_id: str, log: LiveLog, unlogged: list[bytes]) -> None:
        """Hands the frames not yet logged to the recorder, which writes them with its next
        transaction or within its flush interval."""
        if unlogged:
            entry = _entry(run_id, log, unlogged, self._log_max_bytes)
            unlogged.clear()
            if entry is not None:
                self._recorder.log(entry)

    def _blocked(self, event: RunEvent, generated: dict[str, str]) -> ContentBlocked | None:
        if not self._policy.active:
            return None
        try:
            if isinstance(event, Token):
                text = generated.get(event.node_id, "") + event.content
                generated[event.node_id] = text
                self._policy.check_output(text, node_id=event.node_id)
            elif isinstance(event, RunSucceeded):
                self._policy.check_output(event.output)
        except ContentBlocked as error:
            return error
        return None

    async def _record(
        self,
        run: PreparedRun,
        outcome: RunSucceeded | RunFailed,
        nodes: list[NodeRunRecord],
        batch: Batch,
        log: LiveLog,
        unlogged: list[bytes],
    ) -> Batch:
        """Writes the run's end with its nodes, turn and last frames; returns the batch to
        send. If the run had already ended (a replica took this one for dead), the client
        is told the end on record instead."""
        if isinstance(outcome, RunSucceeded):
            status, output, error, error_node = "succeeded", outcome.output, None, None
        else:
            status = "cancelled" if isinstance(outcome.error, Cancelled) else "failed"
            output, error, error_node = None, outcome.error.message, outcome.node_id
        turn = None
        if isinstance(outcome, RunSucceeded) and run.turn_text is not None:
            turn = (run.account_id, run.session_id, run.turn_text, outcome.output)
        entry = _entry(run.run_id, log, unlogged, self._log_max_bytes)
        last = [entry] if entry is not None else []
        unlogged.clear()
        try:
            ended = await self._recorder.finish(
                run_id=run.run_id,
                status=status,
                output=output,
                error=error,
                error_node=error_node,
                total_time=outcome.total_time,
                node_runs=nodes,
                turn=turn,
                log=last,
            )
        except NotFound:
            written = run.row_written
            failure = None
            if written is not None and written.done() and not written.cancelled():
                failure = written.exception()
            if failure is not None:
                # The run's row could not be written: that failure, not a missing run.
                raise failure from None
            raise
        if ended:
            return batch
        record, _ = await self._db.run(
            lambda s: get_run(s, account_id=run.account_id, run_id=run.run_id)
        )
        lost = RunFailed(
            run_id=run.run_id,
            node_id=record.error_node,
            error=FlowportError(f"the run had already ended: {record.error or record.status}"),
            total_time=outcome.total_time,
        )
        return Batch([lost], [flowai.render_event(lost) or b""], batch.first_seq)


def _entry(run_id: str, log: LiveLog, unlogged: list[bytes], max_bytes: int) -> LogEntry | None:
    """The log entry of the frames not yet logged, the last of the live log's. Once the run
    has logged `max_bytes`, its token frames are no longer kept (every other frame is), so
    a run's log stays bounded whatever its models write."""
    first_seq = len(log.frames) - len(unlogged) + 1
    kept = [
        (first_seq + n, frame)
        for n, frame in enumerate(unlogged)
        if log.logged_bytes < max_bytes or not frame.startswith(TOKEN_FRAME)
    ]
    if not kept:
        return None
    data = b"".join(b"id: %d\n" % seq + frame for seq, frame in kept)
    log.logged_bytes += len(data)
    return LogEntry(run_id=run_id, first_seq=kept[0][0], last_seq=kept[-1][0], frames=data.decode())


def _cancelled(run: PreparedRun, message: str, started: float) -> RunFailed:
    """The outcome of a run cancelled before it ended."""
    return RunFailed(
        run_id=run.run_id,
        node_id=None,
        error=Cancelled(message),
        total_time=time.perf_counter() - started,
    )


def _node_record(event: NodeFinished) -> NodeRunRecord:
    return NodeRunRecord(
        node_id=event.node_id,
        node_type=event.type,
        name=event.name,
        status=event.status,
        started_at=event.started_at,
        time_spend=event.time_spend,
        inputs=event.inputs,
        output=event.output,
        error=event.error,
    )
