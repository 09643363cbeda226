"""Run rows written in batches: the starts and ends of every run waiting at one moment go to the
database in one transaction, so a busy service commits once for many runs."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Dialect, Table, bindparam, insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

from flowport.errors import InvalidArgument, NotFound
from flowport.storage.database import Database
from flowport.storage.models import NodeRun, Run, SessionTurn, utc_now
from flowport.storage.runs import FINAL_STATUSES, NodeRunRecord

_RUNS: Table = Run.__table__  # type: ignore[attr-defined]
_NODE_RUNS: Table = NodeRun.__table__  # type: ignore[attr-defined]
_TURNS: Table = SessionTurn.__table__  # type: ignore[attr-defined]
# One statement for every run ending in a batch (executemany); b_ names keep the bound
# values apart from the columns they set.
_FINISH = (
    update(_RUNS)
    .where(_RUNS.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        output=bindparam("b_output"),
        error=bindparam("b_error"),
        error_node=bindparam("b_error_node"),
        total_time=bindparam("b_total_time"),
        finished_at=bindparam("b_finished_at"),
    )
)


@dataclass(slots=True)
class _Write:
    """One run's start (`start` set) or end (`end`, its `nodes` and its session `turn`)."""

    future: asyncio.Future[None]
    start: dict[str, Any] | None = None
    end: dict[str, Any] | None = None
    nodes: Sequence[dict[str, Any]] = ()
    turn: dict[str, Any] | None = None


class RunWriter:
    """`start` and `finish` return once their rows are committed. Writes that arrive while a
    transaction is running wait for it and then share the next one. A write finishes even if
    its caller is cancelled (a client that went away): its run is still accounted for."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._pending: list[_Write] = []
        self._flusher: asyncio.Task[None] | None = None
        self._sqlite: _SqliteStatements | None = None
        self._turns: _TakeTurns | None = None
        self._writing: list[_Write] = []  # the batch being written

    def start(
        self,
        *,
        run_id: str,
        account_id: str,
        key_id: str | None,
        workflow_id: str,
        version: int,
        inputs: dict[str, Any],
        session_id: str | None,
        delay_s: float = 0.0,
    ) -> asyncio.Future[None]:
        """The run's row, status "running" (what `create_run` writes), on its way: returns the
        future of its commit (shield it to wait: it belongs to the writer). A run whose
        client learns its id only with the outcome (a blocking answer) need not wait: its
        `finish` commits in the same transaction or a later one, so an outcome is never on
        record without its run, and a start and end meeting in one batch become one row,
        inserted finished. `delay_s`: the row may wait this long for other writes to go
        with it (a quick run's end: one commit instead of two), and is committed then."""
        row = {
            "id": run_id,
            "account_id": account_id,
            "key_id": key_id,
            "workflow_id": workflow_id,
            "version": version,
            "session_id": session_id,
            "status": "running",
            "inputs": inputs,
            "output": None,
            "error": None,
            "error_node": None,
            "started_at": utc_now(),
            "finished_at": None,
            "total_time": None,
        }
        write = _Write(self._future(), start=row)
        # Read here as well: a caller that does not wait for it leaves no failure unread.
        write.future.add_done_callback(_retrieve)
        self._enqueue(write, delay_s)
        return write.future

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
        turn: tuple[str, str, str, str] | None = None,
    ) -> None:
        """The run's outcome and its nodes, and with `turn` (account id, session id, user
        text, assistant text) the session's new turn: the one path that writes how a run
        ended. NotFound if the run has no row; InvalidArgument for a status not final."""
        if status not in FINAL_STATUSES:
            raise InvalidArgument(
                f"a finished run's status must be one of {', '.join(FINAL_STATUSES)}"
            )
        end = {
            "b_id": run_id,
            "b_status": status,
            "b_output": output,
            "b_error": error,
            "b_error_node": error_node,
            "b_total_time": total_time,
            "b_finished_at": utc_now(),
        }
        nodes = [
            {
                "run_id": run_id,
                "node_id": record.node_id,
                "node_type": record.node_type,
                "name": record.name,
                "status": record.status,
                "started_at": record.started_at,
                "time_spend": record.time_spend,
                "inputs": record.inputs,
                "output": record.output,
                "error": record.error,
            }
            for record in node_runs
        ]
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
        await self._submit(_Write(self._future(), end=end, nodes=nodes, turn=turn_row))

    async def close(self) -> None:
        """Waits for the writes submitted until nothing is left to write (a run ending
        while this waits is written too), then lets go of the lock file."""
        self._flush_soon()  # delayed starts too
        while self._flusher is not None and not self._flusher.done():
            await asyncio.wait({self._flusher})
        if self._turns is not None:
            self._turns.close()

    def _future(self) -> asyncio.Future[None]:
        return asyncio.get_running_loop().create_future()

    async def _submit(self, write: _Write) -> None:
        self._enqueue(write)
        # Shielded: the flusher owns the write; a cancelled caller stops waiting, nothing more.
        await asyncio.shield(write.future)

    def _enqueue(self, write: _Write, delay_s: float = 0.0) -> None:
        self._pending.append(write)
        if delay_s <= 0:
            self._flush_soon()
        elif self._flusher is None or self._flusher.done():
            # A busy writer takes it with its next batch anyway; an idle one in delay_s.
            asyncio.get_running_loop().call_later(delay_s, self._flush_soon)

    def _flush_soon(self) -> None:
        """Starts the flusher, unless it is running (it takes what is pending next)."""
        if self._pending and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.create_task(self._flush(), name="run writer")
            self._flusher.add_done_callback(self._flusher_done)

    def _flusher_done(self, flusher: asyncio.Task[None]) -> None:
        if flusher.cancelled():
            # Only when the event loop is shutting down: the callers waiting for their
            # writes learn that they may not have been made, instead of waiting forever.
            for write in (*self._writing, *self._pending):
                write.future.cancel()
            self._writing, self._pending = [], []

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            self._writing = batch
            if len(batch) == 1:
                await self._write_alone(batch[0])
                continue
            try:
                await self._write(batch)
            except Exception:
                # Nothing of the batch was written. One bad write (a finish without a start)
                # must not fail the others: each is tried on its own.
                for write in batch:
                    await self._write_alone(write)
            else:
                for write in batch:
                    if not write.future.done():
                        write.future.set_result(None)

    async def _write_alone(self, write: _Write) -> None:
        try:
            await self._write([write])
        except Exception as error:
            if not write.future.done():
                write.future.set_exception(error)
                # Retrieved here, so a caller that went away leaves no "never retrieved" noise.
                write.future.exception()
        else:
            if not write.future.done():
                write.future.set_result(None)

    async def _write(self, batch: list[_Write]) -> None:
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
        nodes = [node for write in batch for node in write.nodes]
        turns = [write.turn for write in batch if write.turn is not None]
        if self._db.engine.dialect.name == "sqlite":
            await self._write_sqlite(list(starts.values()), ends, nodes, turns)
            return
        async with self._db.engine.begin() as connection:
            if starts:
                await connection.execute(insert(_RUNS), list(starts.values()))
            if ends:
                await self._finish(connection, ends)
            if nodes:
                await connection.execute(insert(_NODE_RUNS), nodes)
            if turns:
                await connection.execute(insert(_TURNS), turns)

    async def _finish(self, connection: AsyncConnection, ends: list[dict[str, Any]]) -> None:
        if len(ends) > 1 and not connection.dialect.supports_sane_multi_rowcount:
            # The driver cannot count an executemany's rows: one statement per run.
            for end in ends:
                await self._finish(connection, [end])
            return
        result = await connection.execute(_FINISH, ends)
        _check_finished(result.rowcount, len(ends), ends[0]["b_id"])

    async def _write_sqlite(
        self,
        starts: list[dict[str, Any]],
        ends: list[dict[str, Any]],
        nodes: list[dict[str, Any]],
        turns: list[dict[str, Any]],
    ) -> None:
        """The same rows through the pooled connection's aiosqlite driver: SQLAlchemy's
        statement machinery cost ~1 ms of CPU per transaction here, the driver ~0.15 ms."""
        sql = self._sqlite
        if sql is None:
            sql = self._sqlite = _SqliteStatements(self._db.engine.dialect)
        if self._turns is None:
            self._turns = _TakeTurns.for_database(self._db)
        batch = _SqliteBatch(
            runs=sql.insert_run.bind(starts) if starts else None,
            ends=sql.finish_run.bind(ends) if ends else None,
            nodes=sql.insert_node.bind(nodes) if nodes else None,
            turns=sql.insert_turn.bind(turns) if turns else None,
            first_end=ends[0]["b_id"] if ends else "",
        )
        async with self._turns.held(), self._db.engine.connect() as connection:
            raw = await connection.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            # The whole transaction in one trip to aiosqlite's thread: a trip per statement
            # and one for the commit cost ~0.18 ms of a blocking run's p50 at c=1. aiosqlite
            # has no public call for that; `_execute(fn, *args)` is how its own methods
            # queue work on its thread (pinned below 0.23 in pyproject.toml; every writer
            # test on SQLite runs through it).
            await driver._execute(batch.commit, driver._conn)


def _finished_row(start: dict[str, Any], end: dict[str, Any]) -> dict[str, Any]:
    """The start's row with the end's outcome (its b_ values) in place."""
    return start | {name.removeprefix("b_"): value for name, value in end.items() if name != "b_id"}


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def _check_finished(updated: int, ends: int, first_run_id: str) -> None:
    """NotFound unless each of the batch's `ends` runs had a row to update."""
    if updated != ends:
        # Rolled back with the whole batch; written one by one, only the stray one fails.
        missing = first_run_id if ends == 1 else "of a batch"
        raise NotFound(f"run {missing} not found")


@dataclass(frozen=True, slots=True)
class _SqliteBatch:
    """A batch's statements with their rows, run as one transaction on aiosqlite's thread."""

    runs: tuple[str, list[tuple[Any, ...]]] | None
    ends: tuple[str, list[tuple[Any, ...]]] | None
    nodes: tuple[str, list[tuple[Any, ...]]] | None
    turns: tuple[str, list[tuple[Any, ...]]] | None
    first_end: str  # the run named when the batch's only end has no row

    def commit(self, conn: sqlite3.Connection) -> None:
        try:
            if self.runs:
                conn.executemany(*self.runs)
            if self.ends:
                updated = conn.executemany(*self.ends).rowcount
                _check_finished(updated, len(self.ends[1]), self.first_end)
            if self.nodes:
                conn.executemany(*self.nodes)
            if self.turns:
                conn.executemany(*self.turns)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise


class _TakeTurns:
    """The run writers of every process on one SQLite file take turns through a lock file.

    Colliding on SQLite's own write lock, the loser's busy handler sleeps a millisecond or
    more and holds its connection meanwhile: with `serve --workers 2` that stalled both
    processes (measured: more runs per second with one process than with two). A lock the
    kernel hands to the next waiter at once avoids the collisions."""

    def __init__(self, path: Path | None) -> None:
        self._fd = None if path is None else os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    @classmethod
    def for_database(cls, db: Database) -> _TakeTurns:
        name = db.engine.url.database
        if not name or name == ":memory:":
            return cls(None)  # no other process can open it
        return cls(Path(name).with_name(Path(name).name + ".writer-lock"))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        fd = self._fd
        if fd is None:
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # Waited for in a thread; if this task is cancelled meanwhile, the lock is let
            # go as soon as the thread gets it.
            waiting = asyncio.get_running_loop().run_in_executor(
                None, fcntl.flock, fd, fcntl.LOCK_EX
            )
            try:
                await asyncio.shield(waiting)
            except asyncio.CancelledError:
                waiting.add_done_callback(lambda _: fcntl.flock(fd, fcntl.LOCK_UN))
                raise
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


@dataclass(frozen=True, slots=True)
class _Statement:
    """One SQL text with `?` placeholders, the row keys in their order, and SQLAlchemy's bind
    processor for each (JSON text, UTC datetimes), so the rows equal what Core would write."""

    text: str
    keys: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]

    def bind(self, rows: list[dict[str, Any]]) -> tuple[str, list[tuple[Any, ...]]]:
        pairs = tuple(zip(self.keys, self.processors, strict=True))
        return self.text, [
            tuple(row[key] if process is None else process(row[key]) for key, process in pairs)
            for row in rows
        ]


class _SqliteStatements:
    def __init__(self, dialect: Dialect) -> None:
        quote = dialect.identifier_preparer.quote
        run_columns = (
            "id",
            "account_id",
            "key_id",
            "workflow_id",
            "version",
            "session_id",
            "status",
            "inputs",
            "output",
            "error",
            "error_node",
            "started_at",
            "finished_at",
            "total_time",
        )
        self.insert_run = self._insert(dialect, _RUNS, run_columns)
        self.insert_node = self._insert(
            dialect,
            _NODE_RUNS,
            (
                "run_id",
                "node_id",
                "node_type",
                "name",
                "status",
                "started_at",
                "time_spend",
                "inputs",
                "output",
                "error",
            ),
        )
        self.insert_turn = self._insert(
            dialect,
            _TURNS,
            ("account_id", "session_id", "run_id", "user", "assistant", "created_at"),
        )
        finish_columns = ("status", "output", "error", "error_node", "total_time", "finished_at")
        assignments = ", ".join(f"{quote(name)} = ?" for name in finish_columns)
        self.finish_run = _Statement(
            text=f"UPDATE {quote(_RUNS.name)} SET {assignments} WHERE {quote('id')} = ?",
            keys=(*(f"b_{name}" for name in finish_columns), "b_id"),
            processors=tuple(_processor(dialect, _RUNS, name) for name in (*finish_columns, "id")),
        )

    @staticmethod
    def _insert(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> _Statement:
        quote = dialect.identifier_preparer.quote
        names = ", ".join(quote(name) for name in columns)
        marks = ", ".join("?" for _ in columns)
        return _Statement(
            text=f"INSERT INTO {quote(table.name)} ({names}) VALUES ({marks})",
            keys=columns,
            processors=tuple(_processor(dialect, table, name) for name in columns),
        )


def _processor(dialect: Dialect, table: Table, column: str) -> Callable[[Any], Any] | None:
    type_ = table.c[column].type
    return type_.dialect_impl(dialect).bind_processor(dialect)
