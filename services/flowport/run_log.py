"""A run's stream of events as numbered SSE frames: rendered once, sent live, logged, and
replayed or followed from any replica.

Frame n of a stream (counting from 1) is the n-th frame it sent, so a client that lost its
stream after n frames resumes after id n. A stream's log keeps its frames with their `id:`
lines; while it runs, its replica also holds them in memory (LiveRun), for the followers
there. A run without a log (a blocking run, or a stream whose log has expired) has its
frames composed from its record once it has ended: what a stream of it would have sent,
each llm node's text in one frame."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

from flowport import flowai, run_record
from flowport.engine import NodeFinished, NodeStarted, RunEvent, RunStarted, Token
from flowport.storage import (
    LIVE_STATUSES,
    Database,
    NodeRun,
    Run,
    get_run,
    last_seq,
    log_after,
    run_status,
)

# Frames of these kinds end a run's stream.
FINAL_EVENTS = (b"event: output\n", b"event: error\n")
# An SSE comment: parsers ignore it, and proxies see bytes on a quiet stream.
PING = b": ping\n\n"
# How often a follower on another replica than the run's looks at the log when no notice
# came (a notice may be lost: a replica restarting, a channel reconnecting).
POLL_S = 1.0


@dataclass(slots=True)
class Batch:
    """Events that happened together, and the FlowAI frames of those that show, the first
    of them numbered `first_seq`."""

    events: list[RunEvent]
    frames: list[bytes]
    first_seq: int

    @property
    def data(self) -> bytes:
        """The frames as FlowAI's stream writes them (no id lines)."""
        return b"".join(self.frames)


def numbered(frames: list[bytes], first_seq: int) -> bytes:
    """The frames with their `id:` lines, from `first_seq` on."""
    return b"".join(b"id: %d\n" % (first_seq + n) + frame for n, frame in enumerate(frames))


def is_final(frame: bytes) -> bool:
    return frame.startswith(FINAL_EVENTS)


def frames_after(entry: str, after: int) -> list[tuple[int, bytes]]:
    """The (id, frame with its id line) of a logged entry's frames after id `after`."""
    found = []
    for text in entry.split("\n\n"):
        if not text:
            continue
        seq = int(text.partition("\n")[0].removeprefix("id: "))
        if seq > after:
            found.append((seq, f"{text}\n\n".encode()))
    return found


@dataclass(slots=True, eq=False)
class LiveRun:
    """A run executing on this replica: its batches as they come, for its followers here
    (the client that started it, and readers of its events). `followed` counts them;
    `watched` says that followers on other replicas read its log."""

    run_id: str
    batches: list[Batch] = field(default_factory=list)
    frames: list[bytes] = field(default_factory=list)
    ended: bool = False
    followed: int = 0
    watched: bool = False
    _changed: asyncio.Future[None] | None = None
    # Told when the last follower here leaves (the replica may then stop the run).
    on_unfollowed: Callable[[LiveRun], None] | None = None

    def append(self, batch: Batch) -> None:
        self.batches.append(batch)
        self.frames.extend(batch.frames)
        self._wake()

    def end(self) -> None:
        self.ended = True
        self._wake()

    async def follow(self, heartbeat_s: float) -> AsyncIterator[Batch | None]:
        """Every batch from the first, then each new one until the run ends; None after each
        `heartbeat_s` without one (a stream writes a ping then)."""
        with self._following():
            sent = 0
            while True:
                while sent < len(self.batches):
                    sent += 1
                    yield self.batches[sent - 1]
                if self.ended:
                    return
                if not await self._changed_within(heartbeat_s):
                    yield None

    async def follow_frames(self, after: int, heartbeat_s: float) -> AsyncIterator[bytes]:
        """The frames after id `after` with their id lines, then each new one until the run
        ends; a ping after each `heartbeat_s` without one."""
        with self._following():
            sent = after
            while True:
                if len(self.frames) > sent:
                    data = numbered(self.frames[sent:], sent + 1)
                    sent = len(self.frames)
                    yield data
                    continue
                if self.ended:
                    return
                if not await self._changed_within(heartbeat_s):
                    yield PING

    @contextlib.contextmanager
    def _following(self) -> Iterator[None]:
        self.followed += 1
        try:
            yield
        finally:
            self.followed -= 1
            if not self.followed and self.on_unfollowed is not None:
                self.on_unfollowed(self)

    async def _changed_within(self, timeout_s: float) -> bool:
        """Whether batches came, or the run ended, within `timeout_s`."""
        if self._changed is None or self._changed.done():
            self._changed = asyncio.get_running_loop().create_future()
        try:
            # Not wait_for: its waiter future and callbacks cost a held stream more memory.
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(self._changed)
        except TimeoutError:
            return False
        return True

    def _wake(self) -> None:
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)


class Notices:
    """Wakes followers on this replica when another replica logged frames of their run."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[None]] = {}

    def logged(self, run_id: str) -> None:
        waiting = self._waiting.pop(run_id, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    async def wait(self, run_id: str, timeout_s: float) -> None:
        waiting = self._waiting.get(run_id)
        if waiting is None or waiting.done():
            waiting = self._waiting[run_id] = asyncio.get_running_loop().create_future()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(waiting), timeout_s)
        finally:
            if self._waiting.get(run_id) is waiting and waiting.done():
                del self._waiting[run_id]


class RunLogReader:
    """`follow`: a run's frames after an id, then the live run's new ones to its end, from
    whichever replica executes it.

    `live(run_id)` is the run's LiveRun when it executes on this replica; `watch(run_id)`
    asks the replicas to send notices of the run's new frames here."""

    def __init__(
        self,
        db: Database,
        *,
        live: Callable[[str], LiveRun | None],
        watch: Callable[[str], object],
        notices: Notices,
        heartbeat_s: float,
    ) -> None:
        self._db = db
        self._live = live
        self._watch = watch
        self._notices = notices
        self._heartbeat_s = heartbeat_s

    async def follow(self, *, account_id: str, run_id: str, after: int) -> AsyncIterator[bytes]:
        """NotFound for a run of another account (or none). The frames come with their id
        lines; a ping comment after each quiet heartbeat."""
        await self._db.run(lambda s: get_run(s, account_id=account_id, run_id=run_id))
        live = self._live(run_id)
        if live is not None:
            async for data in live.follow_frames(after, self._heartbeat_s):
                yield data
            return
        async for data in self._follow_log(account_id, run_id, after):
            yield data

    async def _follow_log(self, account_id: str, run_id: str, after: int) -> AsyncIterator[bytes]:
        sent = after
        watching = False
        quiet_since = time.monotonic()
        while True:
            # The status first: a run's last frames commit with its end, so once the run is
            # seen ended, the entries read after hold them.
            status = await self._db.run(lambda s: run_status(s, run_id=run_id))
            entries = await self._db.run(
                lambda s: log_after(s, run_id=run_id, after=sent)  # noqa: B023
            )
            for entry in entries:
                frames = frames_after(entry.frames, sent)
                if not frames:
                    continue
                sent = frames[-1][0]
                yield b"".join(frame for _, frame in frames)
                quiet_since = time.monotonic()
                if is_final(frames[-1][1].partition(b"\n")[2]):
                    return
            if status not in LIVE_STATUSES:
                if await self._db.run(lambda s: last_seq(s, run_id=run_id)) == 0:
                    run, nodes = await self._db.run(
                        lambda s: get_run(s, account_id=account_id, run_id=run_id)
                    )
                    record = composed(run, nodes)
                    if len(record) > sent:
                        yield numbered(record[sent:], sent + 1)
                return
            if not watching:
                # From now on the run's replica sends notices of its new frames here.
                self._watch(run_id)
                watching = True
            await self._notices.wait(run_id, min(POLL_S, self._heartbeat_s))
            if time.monotonic() - quiet_since >= self._heartbeat_s:
                quiet_since = time.monotonic()
                yield PING


def composed(run: Run, nodes: list[NodeRun]) -> list[bytes]:
    """The frames of an ended run without a log, from its record (`composed_events`), and
    its output or error, rendered as a stream renders them."""
    frames = [f for event in composed_events(run, nodes) if (f := flowai.render_event(event))]
    if run.status == "succeeded":
        frames.append(flowai.render_event(run_record.outcome(run, nodes)) or b"")
    else:
        # The recorded status as it was, whichever kind of error gave it.
        error = {"Node": run.error_node, "code": run.error_code or 500, "message": run.error}
        frames.append(flowai.frame("error", error))
    return frames


def composed_events(run: Run, nodes: list[NodeRun]) -> list[RunEvent]:
    """The events of an ended run from its record, but its end: its start, each node's
    start and finish, and an llm node's reasoning and text in one token each between them."""
    events: list[RunEvent] = []
    in_node = next((node for node in nodes if node.node_type == "in"), None)
    if in_node is not None:
        events.append(RunStarted(run.id, in_node.node_id, run.inputs, run.session_id))
    for node in nodes:
        output = node.output or {}
        if node.status != "skipped":
            events.append(NodeStarted(node.node_id, node.name, node.node_type))
            if node.node_type == "llm":
                if isinstance(output.get("reasoning"), str) and output["reasoning"]:
                    events.append(Token(node.node_id, "", output["reasoning"]))
                if isinstance(output.get("output"), str) and output["output"]:
                    events.append(Token(node.node_id, output["output"], None))
        events.append(
            NodeFinished(
                node_id=node.node_id,
                name=node.name,
                type=node.node_type,
                status=node.status,  # type: ignore[arg-type]
                started_at=node.started_at,
                time_spend=node.time_spend,
                inputs=node.inputs,
                output=node.output,
                error=node.error,
            )
        )
    return events
