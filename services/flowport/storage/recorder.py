"""The recorder: every write of a run (its row, its outcome, its nodes, its session's turn and
its log of events) goes through one asyncio consumer that gathers the writes waiting at one
moment into one transaction: on PostgreSQL through SQLAlchemy's engine, on SQLite through
sqlite_writes.py, which does the same several times cheaper."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from flowport.errors import InvalidArgument, NotFound
from flowport.storage.accounts import spend_credit_statement
from flowport.storage.database import Database
from flowport.storage.models import (
    FINAL_STATUSES,
    LIVE_STATUSES,
    NodeRun,
    Run,
    RunLogEntry,
    SessionTurn,
    utc_now,
)
from flowport.storage.runs import NewRun, NodeRunRecord
from flowport.storage.sessions import live_turns, recent_turns_statement
from flowport.storage.sqlite_writes import Begun, Lost, SqliteWrites

_RUNS: Table = Run.__table__  # type: ignore[attr-defined]
_NODE_RUNS: Table = NodeRun.__table__  # type: ignore[attr-defined]
_TURNS: Table = SessionTurn.__table__  # type: ignore[attr-defined]
_LOG: Table = RunLogEntry.__table__  # type: ignore[attr-defined]
# One statement for every run ending in a batch (executemany). It ends only a live run: a
# run's status moves forward once, and the row count says whether this write was the one.
# b_ names keep the bound values apart from the columns they set.
_FINISH = (
    update(_RUNS)
    .where(_RUNS.c.id == bindparam("b_id"), _RUNS.c.status.in_(LIVE_STATUSES))
    .values(
        status=bindparam("b_status"),
        output=bindparam("b_output"),
        error=bindparam("b_error"),
        error_node=bindparam("b_error_node"),
        error_code=bindparam("b_error_code"),
        total_time=bindparam("b_total_time"),
        finished_at=bindparam("b_finished_at"),
    )
)
_SPEND = spend_credit_statement()
_TURNS_OF_SESSION = recent_turns_statement()
# Log entries of live runs wait this long for more frames before they are written: a stream
# of tokens costs one row per run per flush, and a replica one transaction per flush.
LOG_FLUSH_S = 0.2


class LogEntry(NamedTuple):
    """Frames `first_seq` to `last_seq` of a run's event stream, as SSE text."""

    run_id: str
    first_seq: int
    last_seq: int
    frames: str


@dataclass(slots=True)
class _Write:
    """One run's start (`start`), its end (`end` with its `nodes`, session `turn` and last log
    entries, written only if the end is the run's), or log entries of live runs (`log`).
    The future's result says whether an end was the run's."""

    future: asyncio.Future[bool]
    start: dict[str, Any] | None = None
    end: dict[str, Any] | None = None
    nodes: Sequence[dict[str, Any]] = ()
    turn: dict[str, Any] | None = None
    log: list[dict[str, Any]] = field(default_factory=list)


class Recorder:
    """`start` (a run's row; hands back the commit's future), `begin` (a start that spends a
    credit or reads the session's memory first), `log` (frames of a live run), `finish`
    (its outcome; says whether it was the run's). Writes that arrive while a transaction
    runs wait for it and then share the next one. A write finishes even if its caller is
    cancelled (a client that went away): its run is still accounted for.

    `on_logged` is told, after each commit, the runs whose logs grew: the replicas' channel
    wakes followers of those runs elsewhere."""

    def __init__(
        self,
        db: Database,
        *,
        on_logged: Callable[[list[str]], None] | None = None,
        log_flush_s: float = LOG_FLUSH_S,
    ) -> None:
        self._db = db
        # SQLite's own path, set up on the first write.
        self._sqlite: SqliteWrites | None = None
        # Runs started and not yet ended here: with none but the caller's, a SQLite write
        # may run on the event loop (see SqliteWrites).
        self._open_runs = 0
        self._on_logged = on_logged
        self._log_flush_s = log_flush_s
        self._pending: list[_Write] = []
        self._flusher: asyncio.Task[None] | None = None
        self._log_flush: asyncio.TimerHandle | None = None
        self._writing: list[_Write] = []  # the batch being written

    def start(self, run: NewRun, *, delay_s: float = 0.0) -> asyncio.Future[bool]:
        """The run's row, status "running" (or "queued"), on its way: returns the future of
        its commit (shield it to wait: it belongs to the recorder). A run whose client learns
        its id only with the outcome (a blocking answer) need not wait: its `finish` commits
        in the same transaction or a later one, so an outcome is never on record without its
        run, and a start and end meeting in one batch become one row, inserted finished.
        `delay_s`: the row may wait this long for other writes to go with it. A queued run
        is not open here: the replica that takes it `adopt`s it."""
        if run.status != "queued":
            self._open_runs += 1
        write = _Write(self._future(), start=run.row())
        # Read here as well: a caller that does not wait for it leaves no failure unread.
        write.future.add_done_callback(_retrieve)
        self._enqueue(write, delay_s)
        return write.future

    def log(self, entry: LogEntry) -> None:
        """Frames of a live run, written within LOG_FLUSH_S or with the next write."""
        write = _Write(self._future(), log=[_log_row(entry)])
        write.future.add_done_callback(_retrieve)
        self._pending.append(write)
        if self._log_flush is None and (self._flusher is None or self._flusher.done()):
            self._log_flush = asyncio.get_running_loop().call_later(
                self._log_flush_s, self._flush_soon
            )

    def adopt(self) -> None:
        """A run started elsewhere (a background run this replica took) will `finish` here."""
        self._open_runs += 1

    async def finish(
        self,
        *,
        run_id: str,
        status: str,
        output: str | None,
        error: str | None,
        error_node: str | None,
        total_time: float,
        node_runs: Sequence[NodeRunRecord],
        error_code: int | None = None,
        turn: tuple[str, str, str, str] | None = None,
        log: Sequence[LogEntry] = (),
        start: NewRun | None = None,
    ) -> bool:
        """The run's outcome with its nodes, its last log entries and with `turn` (account
        id, session id, user text, assistant text) the session's new turn: the one path
        that ends a run. False, and nothing written, if the run had already ended (the
        reaper or a cancel came first); NotFound if the run has no row; InvalidArgument
        for a status that is not final. `start`: the run's row, when it was never written
        (`start` was not called): inserted finished."""
        if status not in FINAL_STATUSES:
            raise InvalidArgument(
                f"a finished run's status must be one of {', '.join(FINAL_STATUSES)}"
            )
        if start is not None:
            self._open_runs += 1
        end = {
            "b_id": run_id,
            "b_status": status,
            "b_output": output,
            "b_error": error,
            "b_error_node": error_node,
            "b_error_code": error_code,
            "b_total_time": total_time,
            "b_finished_at": utc_now(),
        }
        nodes = [_node_row(run_id, record) for record in node_runs]
        turn_row = None
        if turn is not None:
            account_id, session_id, user, assistant = turn
            turn_row = {
                "account_id": account_id,
                "session_id": session_id,
                "run_id": run_id,
                "user": user,
                "assistant": assistant,
                "created_at": utc_now(),
            }
        write = _Write(
            self._future(),
            start=None if start is None else start.row(),
            end=end,
            nodes=nodes,
            turn=turn_row,
            log=[_log_row(e) for e in log],
        )
        self._enqueue(write)
        try:
            # Shielded: the flusher owns the write; a cancelled caller stops waiting.
            return await asyncio.shield(write.future)
        finally:
            self._open_runs -= 1

    async def begin(self, run: NewRun, *, spend: bool, memory_ttl_s: float | None) -> Begun:
        """Starts a run that spends a credit (`spend`) or reads its session's memory
        (`memory_ttl_s`: turns no older than that): both, and its row, in one transaction
        before it returns; an account without a credit left gets no row."""
        if self._db.engine.dialect.name == "sqlite":
            begun = await self._sqlite_writes().begin(
                run.row(), spend=spend, memory_ttl_s=memory_ttl_s, on_loop=self._quiet()
            )
            if run.status != "queued":
                self._open_runs += begun.spent
            return begun

        async def begin(connection: AsyncConnection) -> Begun:
            left = None
            if spend:
                spent = (await connection.execute(_SPEND, {"account_id": run.account_id})).all()
                if not spent:
                    return Begun(False, None, [])
                left = spent[0][0]
            turns: list[tuple[str, str]] = []
            if memory_ttl_s is not None and run.session_id is not None:
                session = {"account_id": run.account_id, "session_id": run.session_id}
                rows = (await connection.execute(_TURNS_OF_SESSION, session)).all()
                turns = [(row.user, row.assistant) for row in live_turns(rows, memory_ttl_s)]
            await connection.execute(insert(_RUNS), [run.row()])
            return Begun(True, left, turns)

        # Shielded: a client going away must not cut the transaction (or the row) in half.
        found: Begun = await asyncio.shield(self._transaction(begin))
        if run.status != "queued":
            self._open_runs += found.spent
        return found

    async def flushed(self) -> None:
        """Returns once every write submitted so far is committed (or has failed); delayed
        starts and log entries are written now."""
        self._flush_soon()
        while self._flusher is not None and not self._flusher.done():
            await asyncio.wait({self._flusher})

    async def close(self) -> None:
        """Waits for the writes submitted until nothing is left to write (a run ending
        while this waits is written too), then closes SQLite's connections."""
        await self.flushed()
        if self._sqlite is not None:
            await self._sqlite.close()
            self._sqlite = None

    def _sqlite_writes(self) -> SqliteWrites:
        if self._sqlite is None:
            self._sqlite = SqliteWrites(self._db)
        return self._sqlite

    def _quiet(self) -> bool:
        """No other run is under way: its writes are not worth waiting for."""
        return self._open_runs <= 1

    def _future(self) -> asyncio.Future[bool]:
        return asyncio.get_running_loop().create_future()

    def _enqueue(self, write: _Write, delay_s: float = 0.0) -> None:
        self._pending.append(write)
        if delay_s <= 0:
            self._flush_soon()
        elif self._flusher is None or self._flusher.done():
            # A busy recorder takes it with its next batch anyway; an idle one in delay_s.
            asyncio.get_running_loop().call_later(delay_s, self._flush_soon)

    def _flush_soon(self) -> None:
        """Starts the flusher, unless it is running (it takes what is pending next)."""
        if self._log_flush is not None:
            self._log_flush.cancel()
            self._log_flush = None
        if self._pending and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.create_task(self._flush(), name="recorder")
            self._flusher.add_done_callback(self._flusher_done)

    def _flusher_done(self, flusher: asyncio.Task[None]) -> None:
        if flusher.cancelled():
            # Only when the event loop is shutting down: the callers waiting for their
            # writes learn that they may not have been made, instead of waiting forever.
            for write in (*self._writing, *self._pending):
                write.future.cancel()
            self._writing, self._pending = [], []

    async def _flush(self) -> None:
        # Log entries arriving meanwhile go with the next batch: a busy recorder writes them
        # at once, an idle one within LOG_FLUSH_S.
        while self._pending:
            batch, self._pending = self._pending, []
            self._writing = batch
            if len(batch) == 1:
                await self._write_alone(batch[0])
            else:
                try:
                    await self._commit(batch, alone=False)
                except Exception:
                    # Nothing of the batch was written. One stray write (a finish without a
                    # start, a run that had already ended) must not fail the others.
                    for write in batch:
                        await self._write_alone(write)
                else:
                    for write in batch:
                        _settle(write, True)
            self._logged(batch)

    async def _write_alone(self, write: _Write) -> None:
        try:
            ended = await self._commit([write], alone=True)
        except Exception as error:
            if not write.future.done():
                write.future.set_exception(error)
                # Retrieved here, so a caller that went away leaves no "never retrieved" noise.
                write.future.exception()
        else:
            _settle(write, ended)

    async def _commit(self, batch: list[_Write], *, alone: bool) -> bool:
        """Writes `batch` in one transaction; True unless it is one end whose run had
        already ended (then nothing of it is written). A batch of several writes holding
        such an end raises Lost, with nothing written."""
        starts = {write.start["id"]: write.start for write in batch if write.start is not None}
        ends = []
        for write in batch:
            if write.end is None:
                continue
            start = starts.get(write.end["b_id"])
            if start is None:
                ends.append(write.end)
            else:
                # Started and ended in one batch: one row, inserted finished.
                starts[start["id"]] = _finished_row(start, write.end)
        rows = (
            list(starts.values()),
            ends,
            [node for write in batch for node in write.nodes],
            [write.turn for write in batch if write.turn is not None],
            _one_row_per_run([row for write in batch for row in write.log]),
        )
        if self._db.engine.dialect.name == "sqlite":
            return await self._sqlite_writes().write(*rows, alone=alone, on_loop=self._quiet())
        return await self._transaction(functools.partial(_write, rows=rows, alone=alone))

    async def _transaction(self, work: Callable[[AsyncConnection], Any]) -> Any:
        async with self._db.engine.begin() as connection:
            return await work(connection)

    def _logged(self, batch: list[_Write]) -> None:
        if self._on_logged is None:
            return
        runs = list(
            dict.fromkeys(
                row["run_id"]
                for write in batch
                if write.future.done() and not write.future.exception() and write.future.result()
                for row in write.log
            )
        )
        if runs:
            self._on_logged(runs)


Rows = tuple[
    list[dict[str, Any]],  # runs to insert
    list[dict[str, Any]],  # ends of live runs
    list[dict[str, Any]],  # node runs
    list[dict[str, Any]],  # session turns
    list[dict[str, Any]],  # log entries
]


async def _write(connection: AsyncConnection, *, rows: Rows, alone: bool) -> bool:
    """The recorder's transaction on PostgreSQL (see Recorder._commit)."""
    starts, ends, nodes, turns, log = rows
    if starts:
        await connection.execute(insert(_RUNS), starts)
    if ends:
        updated = await _finish(connection, ends)
        if updated != len(ends):
            if not alone:
                raise Lost
            await _missing_or_ended(connection, ends[0]["b_id"])
            # Ended by someone else: this transaction is rolled back, nothing is written.
            await connection.rollback()
            return False
    for table, values in ((_NODE_RUNS, nodes), (_TURNS, turns), (_LOG, log)):
        if values:
            await connection.execute(insert(table), values)
    return True


async def _finish(connection: AsyncConnection, ends: list[dict[str, Any]]) -> int:
    """How many of `ends` ended their run."""
    if len(ends) > 1 and not connection.dialect.supports_sane_multi_rowcount:
        # The driver cannot count an executemany's rows: one statement per run.
        return sum([await _finish(connection, [end]) for end in ends])
    result = await connection.execute(_FINISH, ends)
    return int(result.rowcount)


async def _missing_or_ended(connection: AsyncConnection, run_id: str) -> None:
    """After an end that changed no row: NotFound if the run has none; else it had ended."""
    found = await connection.execute(select(_RUNS.c.status).where(_RUNS.c.id == run_id))
    if found.first() is None:
        raise NotFound(f"run {run_id} not found")


def _settle(write: _Write, result: bool) -> None:
    if not write.future.done():
        write.future.set_result(result)


def _node_row(run_id: str, record: NodeRunRecord) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "node_id": record.node_id,
        "node_type": record.type,
        "name": record.name,
        "status": record.status,
        "started_at": record.started_at,
        "time_spend": record.time_spend,
        "inputs": record.inputs,
        "output": record.output,
        "error": record.error,
    }


def _log_row(entry: LogEntry) -> dict[str, Any]:
    return {
        "run_id": entry.run_id,
        "first_seq": entry.first_seq,
        "last_seq": entry.last_seq,
        "frames": entry.frames,
        "created_at": utc_now(),
    }


def _one_row_per_run(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A run's entries in a batch joined into one row: they come in order, and each holds
    its frames' id lines, so the row needs only the first and last id."""
    joined: dict[str, dict[str, Any]] = {}
    for row in rows:
        first = joined.get(row["run_id"])
        if first is None:
            joined[row["run_id"]] = dict(row)
        else:
            first["last_seq"] = row["last_seq"]
            first["frames"] += row["frames"]
    return list(joined.values())


def _finished_row(start: dict[str, Any], end: dict[str, Any]) -> dict[str, Any]:
    """The start's row with the end's outcome (its b_ values) in place."""
    return start | {name.removeprefix("b_"): value for name, value in end.items() if name != "b_id"}


def _retrieve(future: asyncio.Future[bool]) -> None:
    if not future.cancelled():
        future.exception()
