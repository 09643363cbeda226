"""Execution: admitted runs executing on this replica. One path for every surface: `Run`,
`RunStream`, FlowAI's and LinkAI's routes all drain `batches`, which renders each batch's
frames once, logs them, checks outputs against the content policy, and records the
outcome before the last batch leaves.

A blocking run executes in its caller's task: a client that goes away cancels it. A stream
executes in a task of its own (`start`) that its client follows: when the client goes away,
the run goes on for `resume_s`, so that the client can come back for the rest through the
run's events, and is cancelled if nobody follows it by then. A background run executes in
its job's task (`run_in_background`) to its end, followed or not.

A run with a webhook has its first delivery scheduled once its end is on record."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flowport import flowai, statuses
from flowport.admission import PreparedRun
from flowport.engine import (
    LlmClient,
    NodeFinished,
    RunEvent,
    RunFailed,
    RunSucceeded,
    Token,
    execute,
    run_now,
)
from flowport.errors import Cancelled, ContentBlocked, FlowportError, NotFound
from flowport.metrics import Metrics
from flowport.outbound import Outbound
from flowport.policy import ContentPolicy, StreamWatch
from flowport.run_log import Batch, LiveRun
from flowport.storage import Database, LogEntry, NodeRunRecord, Recorder, get_run
from flowport.webhooks import Deliveries

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

log = logging.getLogger(__name__)

CANCELLED_BY_REQUEST = "the run was cancelled by a cancel request"
CANCELLED_BY_CLIENT = "the run was cancelled: the client went away"
CANCELLED_UNFOLLOWED = "the run was cancelled: its client went away and nobody followed it"
CANCELLED_BY_STOP = "the run was cancelled: the service stopped"
TOKEN_FRAME = b"event: stream\n"


@dataclass(slots=True)
class _ActiveRun:
    """A run executing here: the task draining its events (which a cancel call cancels),
    why it was cancelled when a call did, and a stream's batches for its followers."""

    task: asyncio.Task[Any] | None
    live: LiveRun | None
    cancel_reason: str | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    abandon: asyncio.TimerHandle | None = None
    # Goes on to its end though nobody follows it.
    keep_going: bool = False


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
        log_max_bytes: int,
        resume_s: float,
        webhooks: Deliveries | None = None,
        metrics: Metrics | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self._db = db
        self._metrics = metrics or Metrics()
        self._tracer = tracer
        self._webhooks = webhooks
        self._recorder = recorder
        self._llm = llm
        self._outbound = outbound
        self._policy = policy
        self._default_model = default_model
        self._log_max_bytes = log_max_bytes
        self._resume_s = resume_s
        # Runs executing here, by id, so cancel calls and followers can reach them.
        self._active: dict[str, _ActiveRun] = {}
        # The tasks of streams' runs, kept until they end (the loop holds tasks weakly).
        self._tasks: set[asyncio.Task[None]] = set()

    def live(self, run_id: str) -> LiveRun | None:
        active = self._active.get(run_id)
        return None if active is None else active.live

    def watch(self, run_id: str) -> None:
        """A follower on another replica reads the run's log: it wants notices of the run's
        new frames, and the run goes on to its end."""
        live = self.live(run_id)
        if live is not None:
            live.watched = True

    def watched(self, run_ids: list[str]) -> list[str]:
        """Those of `run_ids` that followers on other replicas watch."""
        return [run_id for run_id in run_ids if (live := self.live(run_id)) and live.watched]

    def start(self, run: PreparedRun, *, keep_going: bool = False) -> LiveRun:
        """Executes the run in a task of its own; follow the LiveRun for its batches.
        `keep_going`: to its end, though its followers leave."""
        live = LiveRun(run.run_id, on_unfollowed=None if keep_going else self._unfollowed)
        task = asyncio.create_task(self._drive(run, live), name=f"run {run.run_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return live

    async def run_in_background(self, run: PreparedRun) -> None:
        """Executes a background run in the caller's task (its job's) to its end; readers of
        its events follow it meanwhile, and nobody leaving stops it."""
        self._recorder.adopt()
        await self._drive(run, LiveRun(run.run_id))

    async def fail_unstarted(
        self, run_id: str, error: FlowportError, *, webhook_url: str | None
    ) -> None:
        """A background run this replica took that could not begin (its version or its
        files could not be read): failed on record, its webhook told."""
        self._recorder.adopt()
        ended = await self._recorder.finish(
            run_id=run_id,
            status="failed",
            output=None,
            error=error.message,
            error_node=None,
            error_code=statuses.of(error).rest,
            total_time=0.0,
            node_runs=[],
        )
        if ended and webhook_url is not None and self._webhooks is not None:
            await self._webhooks.schedule(run_id)

    async def run_to_end(self, run: PreparedRun) -> RunSucceeded:
        """In the caller's task, the same batches a stream gets; a failed run raises its
        error."""
        if run.blocking and run.workflow.immediate and self._tracer is None:
            return await self._run_now(run)
        async with aclosing(self.batches(run)) as batches:
            return await _outcome(batches)

    async def _run_now(self, run: PreparedRun) -> RunSucceeded:
        """A blocking run of immediate nodes: executed in one synchronous pass, then
        recorded. Nothing can stop it midway: a cancel call or a client leaving meets a run
        whose outcome is being written (as `batches` does once the outcome is known)."""
        self._metrics.run_started(run.workflow_id, run.mode)
        try:
            events = run_now(
                run.workflow,
                run_id=run.run_id,
                inputs=run.inputs,
                session_id=run.session_id,
                outbound=self._outbound,
            )
            outcome = events[-1]
            assert isinstance(outcome, RunSucceeded | RunFailed)
            blocked = self._blocked(outcome, {})
            if blocked is not None:
                outcome = RunFailed(run.run_id, blocked.node_id, blocked, outcome.total_time)
            nodes = [event for event in events if isinstance(event, NodeFinished)]
            told = await self._recorded(run, outcome, nodes, None)
        finally:
            self._metrics.run_left()
        if isinstance(told, RunFailed):
            raise told.error
        return told

    async def run_detached(self, run: PreparedRun) -> RunSucceeded:
        """`run_to_end`, but in a task of its own that goes on to the end if the caller
        leaves (a retry with its Idempotency-Key is answered with its outcome)."""
        live = self.start(run, keep_going=True)
        # No heartbeat is sent to a blocking caller: the follow is told one an hour.
        return await _outcome(batch async for batch in live.follow(3600.0) if batch is not None)

    async def cancel_here(
        self, run_id: str, *, reason: str = CANCELLED_BY_REQUEST, wait_s: float = 5.0
    ) -> bool:
        """Cancels a run executing on this replica and waits until its outcome is recorded.
        False if it is not executing here."""
        active = self._active.get(run_id)
        if active is None or active.task is None:
            return False
        if active.cancel_reason is None:
            active.cancel_reason = reason
            active.task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(active.finished.wait(), wait_s)
        return True

    async def drain(self) -> None:
        """Stops the runs still going (the service is stopping and its calls have ended:
        these are streams whose clients went away), then waits for the writes of every
        run that ended."""
        await asyncio.gather(
            *(self.cancel_here(run_id, reason=CANCELLED_BY_STOP) for run_id in list(self._active))
        )
        if self._tasks:
            await asyncio.wait(self._tasks)
        await self._recorder.close()

    async def _drive(self, run: PreparedRun, live: LiveRun) -> None:
        """A stream's run, from its own task, into `live`."""
        try:
            # A blocking run's followers read its record (it renders no frames to follow).
            shown = None if run.blocking else live
            async with aclosing(self.batches(run, shown)) as batches:
                async for batch in batches:
                    live.append(batch)
        except Exception:
            # Its followers are told, without the internals; the log has the traceback.
            log.exception("run %s failed", run.run_id)
            failed = FlowportError("internal error")
            event = RunFailed(run_id=run.run_id, node_id=None, error=failed, total_time=0.0)
            live.append(Batch([event], [flowai.render_event(event) or b""], len(live.frames) + 1))
        finally:
            live.end()

    def batches(self, run: PreparedRun, live: LiveRun | None = None) -> AsyncGenerator[Batch, None]:
        """The run's events as they happen, in the engine's batches. The outcome is recorded
        before the last batch is yielded, so a run acknowledged to the client is on record;
        a consumer that stops early (the client went away) leaves the run recorded as
        cancelled. `live`: the stream's batches, which followers here read."""
        if self._tracer is None:
            return self._batches(run, live)
        return self._traced_batches(self._tracer, run, live)

    async def _traced_batches(
        self, tracer: Tracer, run: PreparedRun, live: LiveRun | None
    ) -> AsyncGenerator[Batch, None]:
        """`_batches` in the run's span, current while the engine runs, so that the nodes'
        spans are its children (and it the child of the call's)."""
        from opentelemetry.trace import StatusCode

        attributes = {
            "flowport.run_id": run.run_id,
            "flowport.workflow_id": run.workflow_id,
            "flowport.mode": run.mode,
        }
        with tracer.start_as_current_span("flowport run", attributes=attributes) as span:
            async with aclosing(self._batches(run, live)) as batches:
                async for batch in batches:
                    if batch.events and isinstance(last := batch.events[-1], RunFailed):
                        span.set_status(StatusCode.ERROR, last.error.message)
                    yield batch

    async def _batches(
        self, run: PreparedRun, live: LiveRun | None = None
    ) -> AsyncGenerator[Batch, None]:
        nodes: list[NodeRunRecord] = []
        recorded = False
        started = time.perf_counter()
        # Each llm node's answer and reasoning so far (by node id and whether reasoning): a
        # blocked word is caught as soon as it is generated.
        generated: dict[tuple[str, bool], StreamWatch] = {}
        active = _ActiveRun(task=asyncio.current_task(), live=live)
        self._active[run.run_id] = active
        # A stream's frames are rendered and logged as they go; a blocking run has none (its
        # events are composed from its record when asked for: run_log.py).
        frames = _Frames(run.run_id, self._log_max_bytes, render=not run.blocking)
        metrics = self._metrics
        metrics.run_started(run.workflow_id, run.mode)
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
                    tracer=self._tracer,
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
                            nodes.append(event)
                        elif isinstance(event, RunSucceeded | RunFailed):
                            outcome = event
                            break
                    batch = frames.batch(checked)
                    if outcome is not None:
                        # Set before the write: the recorder finishes it even if this task
                        # is cancelled while it waits, so no other outcome may follow.
                        recorded = True
                        batch = await self._record(run, outcome, nodes, batch, frames)
                        yield batch
                        # Leaving the block closes the engine: in-flight nodes are cancelled.
                        return
                    entry = frames.entry()
                    if entry is not None:
                        # Written with the recorder's next transaction or within its flush
                        # interval.
                        self._recorder.log(entry)
                    yield batch
        except asyncio.CancelledError:
            reason = active.cancel_reason
            if reason is None or active.task is None:
                raise
            # A cancel call, not the client leaving: the engine is closed by now, and the
            # run's followers are still there to be told.
            active.task.uncancel()
            if recorded:
                # The run had ended as the call came: its outcome is the answer, once on
                # record (the call cut short this task's wait for that write, not the write).
                await self._recorder.flushed()
                yield batch
                return
            recorded = True
            cancelled = _cancelled(run, reason, started)
            yield await self._record(run, cancelled, nodes, frames.batch([cancelled]), frames)
        finally:
            metrics.run_left()
            del self._active[run.run_id]
            if active.abandon is not None:
                active.abandon.cancel()
            if not recorded:
                # The recorder finishes the write even though this task is being cancelled.
                # A background run has no client: only the service stopping cancels it so.
                reason = CANCELLED_BY_STOP if run.mode == "async" else CANCELLED_BY_CLIENT
                cancelled = _cancelled(run, reason, started)
                await self._record(run, cancelled, nodes, frames.batch([cancelled]), frames)
            active.finished.set()

    def _unfollowed(self, live: LiveRun) -> None:
        """The last follower here left: unless someone elsewhere reads its log, the run is
        cancelled if nobody follows it within `resume_s`."""
        active = self._active.get(live.run_id)
        if active is None or live.ended or live.watched:
            return
        if active.abandon is not None:
            active.abandon.cancel()
        active.abandon = asyncio.get_running_loop().call_later(
            self._resume_s, self._abandon, live.run_id
        )

    def _abandon(self, run_id: str) -> None:
        active = self._active.get(run_id)
        if active is None or active.live is None:
            return
        active.abandon = None
        if not active.live.followed and not active.live.watched:
            task = asyncio.ensure_future(self.cancel_here(run_id, reason=CANCELLED_UNFOLLOWED))
            self._tasks.add(task)  # type: ignore[arg-type]
            task.add_done_callback(self._tasks.discard)  # type: ignore[arg-type]

    def _blocked(
        self, event: RunEvent, generated: dict[tuple[str, bool], StreamWatch]
    ) -> ContentBlocked | None:
        if not self._policy.active:
            return None
        try:
            if isinstance(event, Token):
                # The reasoning reaches clients too (FlowAI's `Reasoning`): watched as its
                # own text, so that it is not joined to the answer.
                for reasoning, text in ((False, event.content), (True, event.reasoning)):
                    if text:
                        watch = generated.get((event.node_id, reasoning))
                        if watch is None:
                            watch = self._policy.watch(node_id=event.node_id)
                            generated[(event.node_id, reasoning)] = watch
                        watch.feed(text)
            elif isinstance(event, RunSucceeded):
                self._policy.check_output(event.output)
        except ContentBlocked as error:
            return error
        return None

    async def _record(
        self,
        run: PreparedRun,
        outcome: RunSucceeded | RunFailed,
        nodes: Sequence[NodeRunRecord],
        batch: Batch,
        frames: _Frames,
    ) -> Batch:
        """Writes the run's end with its nodes, turn and last frames; returns the batch to
        send: `batch`, or the end on record if the run had already ended."""
        told = await self._recorded(run, outcome, nodes, frames.entry())
        if told is outcome:
            return batch
        return Batch([told], [flowai.render_event(told) or b""], batch.first_seq)

    async def _recorded(
        self,
        run: PreparedRun,
        outcome: RunSucceeded | RunFailed,
        nodes: Sequence[NodeRunRecord],
        entry: LogEntry | None,
    ) -> RunSucceeded | RunFailed:
        """Writes the run's end with its nodes, turn and last log entry; returns the end to
        tell the client: `outcome`, or if the run had already ended (a replica took this one
        for dead, a cancel came first), the end on record."""
        if isinstance(outcome, RunSucceeded):
            status, output, error, error_node = "succeeded", outcome.output, None, None
            error_code = None
        else:
            status = "cancelled" if isinstance(outcome.error, Cancelled) else "failed"
            output, error, error_node = None, outcome.error.message, outcome.node_id
            error_code = statuses.of(outcome.error).rest
        self._metrics.run_ended(run.workflow_id, status, outcome.total_time, nodes)
        turn = None
        if isinstance(outcome, RunSucceeded) and run.turn_text is not None:
            turn = (run.account_id, run.session_id, run.turn_text, outcome.output)
        try:
            ended = await self._recorder.finish(
                run_id=run.run_id,
                status=status,
                output=output,
                error=error,
                error_node=error_node,
                error_code=error_code,
                total_time=outcome.total_time,
                node_runs=nodes,
                turn=turn,
                log=[entry] if entry is not None else [],
                start=run.unwritten,
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
            if run.webhook_url is not None and self._webhooks is not None:
                await self._webhooks.schedule(run.run_id)
            return outcome
        record, _ = await self._db.run(
            lambda s: get_run(s, account_id=run.account_id, run_id=run.run_id)
        )
        return RunFailed(
            run_id=run.run_id,
            node_id=record.error_node,
            error=FlowportError(f"the run had already ended: {record.error or record.status}"),
            total_time=outcome.total_time,
        )


class _Frames:
    """A stream's frames as `batches` renders them: numbered, and handed to the log in
    entries. Once the run has logged `max_bytes`, its token frames are no longer kept (every
    other frame is), so a run's log stays bounded whatever its models write. Not `render`:
    batches of events alone."""

    def __init__(self, run_id: str, max_bytes: int, *, render: bool) -> None:
        self._run_id = run_id
        self._max_bytes = max_bytes
        self._render = render
        self._last_seq = 0
        self._logged_bytes = 0
        # Rendered, not yet handed to the log: the last ones go with the run's end.
        self._unlogged: list[tuple[int, bytes]] = []

    def batch(self, events: list[RunEvent]) -> Batch:
        if not self._render:
            return Batch(events, [], 0)
        frames = [frame for event in events if (frame := flowai.render_event(event)) is not None]
        first_seq = self._last_seq + 1
        for frame in frames:
            self._last_seq += 1
            self._unlogged.append((self._last_seq, frame))
        return Batch(events, frames, first_seq)

    def entry(self) -> LogEntry | None:
        """The frames not yet logged, as one log entry; None when there are none to keep."""
        kept = [
            (seq, frame)
            for seq, frame in self._unlogged
            if self._logged_bytes < self._max_bytes or not frame.startswith(TOKEN_FRAME)
        ]
        self._unlogged = []
        if not kept:
            return None
        data = b"".join(b"id: %d\n" % seq + frame for seq, frame in kept)
        self._logged_bytes += len(data)
        return LogEntry(self._run_id, kept[0][0], kept[-1][0], data.decode())


async def _outcome(batches: AsyncIterator[Batch]) -> RunSucceeded:
    """The run's output once it succeeded; its error raised when it failed."""
    async for batch in batches:
        for event in batch.events:
            if isinstance(event, RunSucceeded):
                return event
            if isinstance(event, RunFailed):
                raise event.error
    raise FlowportError("the run ended without an outcome")


def _cancelled(run: PreparedRun, message: str, started: float) -> RunFailed:
    """The outcome of a run cancelled before it ended."""
    return RunFailed(
        run_id=run.run_id,
        node_id=None,
        error=Cancelled(message),
        total_time=time.perf_counter() - started,
    )
