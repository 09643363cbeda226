"""The run writer's SQLite path: a batch of run rows as one transaction on a connection and
thread of the writer's own, with the writers of other processes taking turns."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Dialect, Table

from flowport.errors import NotFound
from flowport.storage.database import Database, open_sqlite_file
from flowport.storage.models import NodeRun, Run, SessionTurn

_RUNS: Table = Run.__table__  # type: ignore[attr-defined]
_NODE_RUNS: Table = NodeRun.__table__  # type: ignore[attr-defined]
_TURNS: Table = SessionTurn.__table__  # type: ignore[attr-defined]


def check_finished(updated: int, ends: int, first_run_id: str) -> None:
    """NotFound unless each of the batch's `ends` runs had a row to update."""
    if updated != ends:
        # Rolled back with the whole batch; written one by one, only the stray one fails.
        missing = first_run_id if ends == 1 else "of a batch"
        raise NotFound(f"run {missing} not found")


class SqliteWrites:
    """Writes batches of run rows to one SQLite file.

    The connection is the writer's own, not one from the engine's pool: checking the pool's
    one connection out and back in cost ~0.25 ms of a blocking run's p50 at c=1 (SQLAlchemy's
    async checkout and return), and a batch would wait behind the service's reads. It lives
    on a thread of its own, as aiosqlite's does, so a batch is one trip there: its
    statements and the commit together."""

    def __init__(self, db: Database) -> None:
        path = db.engine.url.database
        if not path:  # typed as optional; Database.connect takes SQLite files only
            raise ValueError("the run writer needs a SQLite database file")
        self._path = path
        self._statements = _Statements(db.engine.dialect)
        self._turns = _TakeTurns(Path(path).with_name(Path(path).name + ".writer-lock"))
        # This process's writes take turns here, and with other processes' on the lock file.
        self._lock = asyncio.Lock()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="run-writer")
        self._connection: sqlite3.Connection | None = None

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Held while writing to the file: a write through another connection (the engine's)
        held in a turn never collides with the writer's, whose loser would sleep in SQLite's
        busy handler for a millisecond or more, holding its connection meanwhile."""
        async with self._lock, self._turns.held():
            yield

    async def write(
        self,
        starts: list[dict[str, Any]],
        ends: list[dict[str, Any]],
        nodes: list[dict[str, Any]],
        turns: list[dict[str, Any]],
    ) -> None:
        """One transaction: new run rows (`starts`, each complete), outcomes of runs already
        written (`ends`, with b_ keys as RunWriter's), node rows and session turns."""
        sql = self._statements
        batch = _Batch(
            runs=sql.insert_run.bind(starts) if starts else None,
            ends=sql.finish_run.bind(ends) if ends else None,
            nodes=sql.insert_node.bind(nodes) if nodes else None,
            turns=sql.insert_turn.bind(turns) if turns else None,
            first_end=ends[0]["b_id"] if ends else "",
        )
        async with self.turn():
            await asyncio.get_running_loop().run_in_executor(self._thread, self._commit, batch)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._disconnect)
        self._thread.shutdown(wait=False)
        self._turns.close()

    def _commit(self, batch: _Batch) -> None:
        # Opened on first use, on the thread that then always uses it.
        if self._connection is None:
            self._connection = open_sqlite_file(self._path)
        batch.commit(self._connection)

    def _disconnect(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


@dataclass(frozen=True, slots=True)
class _Batch:
    """A batch's statements with their rows, run as one transaction on the writer's thread."""

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
                check_finished(updated, len(self.ends[1]), self.first_end)
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

    def __init__(self, path: Path) -> None:
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        fd = self._fd
        if fd is None:
            raise RuntimeError("the run writer is closed")
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


class _Statements:
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
