"""The recorder's SQLite path: a batch of run rows, or a run's start with its credit and
memory, as one transaction on connections of its own (on its thread, or on the event loop
when no lock is taken), with the recorders of other processes taking turns.

Kept beside the recorder's SQLAlchemy path (which PostgreSQL takes) because it is several
times cheaper per run: SQLAlchemy's asyncio layer over aiosqlite, or its synchronous Core on
a thread, cost a blocking run several times the event loop's CPU and wall time of this
path (docs/performance.md has the figures). The statements are SQLAlchemy's own, compiled
once for SQLite, with its bind processors, so the rows equal what Core writes."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import ClauseElement, Dialect, Table
from sqlalchemy.sql.compiler import SQLCompiler

from flowport.errors import NotFound
from flowport.storage.accounts import spend_credit_statement
from flowport.storage.database import Database, open_sqlite_file
from flowport.storage.models import LIVE_STATUSES, NodeRun, Run, RunLogEntry, SessionTurn
from flowport.storage.sessions import live_turns, recent_turns_statement

T = TypeVar("T")
_RUN_EXISTS = "SELECT 1 FROM runs WHERE id = ?"

_log = logging.getLogger(__name__)
# The event loop's commits between two checkpoints: ~1,000 pages of log at a BMI run's
# few pages a commit, where SQLite's own automatic checkpoint would run.
CHECKPOINT_EVERY = 200

_RUNS: Table = Run.__table__  # type: ignore[attr-defined]
_NODE_RUNS: Table = NodeRun.__table__  # type: ignore[attr-defined]
_TURNS: Table = SessionTurn.__table__  # type: ignore[attr-defined]
_LOG: Table = RunLogEntry.__table__  # type: ignore[attr-defined]


class Lost(Exception):
    """A batch held an end whose run had already ended (or had no row): nothing of it was
    written, and its writes are tried one by one."""


class Begun(NamedTuple):
    """What `begin` found: whether a credit was spent (False: none was left, and nothing was
    written), the credits left (None: unlimited, or no spend asked), and the session's
    turns as (user, assistant), oldest first."""

    spent: bool
    credits_left: int | None
    turns: list[tuple[str, str]]


class SqliteWrites:
    """Writes run rows to one SQLite file.

    The connections are its own, not from the engine's pool: checking the pool's one
    connection out and back in (SQLAlchemy's async checkout and return) cost more than the
    write, and a write would wait behind the service's reads.

    A call the caller allows `on_loop` (no other run is under way) runs on the event loop
    itself when it can start there without waiting: the thread is idle, and both the lock
    of other processes' recorders and SQLite's write lock are free at once; the two trips
    to a thread and back would cost more than the write. Otherwise it goes to a thread of
    its own (as aiosqlite's does), which waits for those locks, so the event loop never
    does: a lock held by a transaction of the engine's pool, which needs the event loop to
    finish, would stall the loop until SQLite's busy timeout. A busy service's writes go
    to the thread too: meanwhile the next ones gather into one commit, where on the loop
    each run would be a commit of its own."""

    def __init__(self, db: Database) -> None:
        path = db.engine.url.database
        if not path:  # typed as optional; Database.connect takes SQLite files only
            raise ValueError("the recorder needs a SQLite database file")
        self._path = path
        self._statements = _Statements(db.engine.dialect)
        self._turns = _TakeTurns(Path(path).with_name(Path(path).name + ".writer-lock"))
        self._thread = _WriterThread()
        self._connection: sqlite3.Connection | None = None  # the thread's
        self._loop_connection: sqlite3.Connection | None = None  # the event loop's
        self._loop_commits = 0

    async def write(
        self,
        starts: list[dict[str, Any]],
        ends: list[dict[str, Any]],
        nodes: list[dict[str, Any]],
        turns: list[dict[str, Any]],
        log: list[dict[str, Any]],
        *,
        alone: bool,
        on_loop: bool = True,
    ) -> bool:
        """One transaction: new run rows (`starts`, each complete), the ends of live runs
        (`ends`, with b_ keys as the recorder's), node rows, session turns and log entries.
        If an end's run had already ended: `alone` (the batch is that end), nothing is
        written and the answer is False (NotFound if the run has no row); else Lost, with
        nothing written. `on_loop`: it may run on the event loop (see the class)."""
        sql = self._statements
        batch = _Batch(
            runs=(sql.insert_run, starts),
            ends=(sql.finish_run, ends),
            nodes=(sql.insert_node, nodes),
            turns=(sql.insert_turn, turns),
            log=(sql.insert_log, log),
            first_end=ends[0]["b_id"] if ends else "",
            alone=alone,
        )
        try:
            return await self._transact(batch.commit, on_loop=on_loop)
        except _Ended:
            return False

    async def begin(
        self,
        run: dict[str, Any],
        *,
        spend: bool,
        memory_ttl_s: float | None,
        on_loop: bool = True,
    ) -> Begun:
        """One transaction: spends a credit of the run's account (`spend`), reads its
        session's turns (`memory_ttl_s`: none if the newest is older), and inserts its row;
        an account without a credit left gets no row. `on_loop` as for `write`."""
        sql = self._statements
        account = {"account_id": run["account_id"]}
        session = {"account_id": run["account_id"], "session_id": run["session_id"]}
        insert = sql.insert_run.bind([run])

        def begin(conn: sqlite3.Connection) -> tuple[bool, int | None, list[tuple[Any, ...]]]:
            with _transaction(conn):
                left = None
                if spend:
                    spent = conn.execute(*sql.spend_credit.bind(account)).fetchall()
                    if not spent:
                        return False, None, []  # the UPDATE changed nothing
                    left = spent[0][0]
                rows = []
                if memory_ttl_s is not None:
                    rows = conn.execute(*sql.recent_turns.bind(session)).fetchall()
                conn.executemany(*insert)
            return True, left, rows

        spent, left, rows = await self._transact(begin, on_loop=on_loop)
        read = [_TurnRow(user, assistant, sql.read_time(at)) for user, assistant, at in rows]
        turns = live_turns(read, memory_ttl_s) if memory_ttl_s is not None else []
        return Begun(spent, left, [(turn.user, turn.assistant) for turn in turns])

    async def close(self) -> None:
        await self._thread.call(self._disconnect)
        self._thread.stop()
        if self._loop_connection is not None:
            self._loop_connection.close()
            self._loop_connection = None
        self._turns.close()

    async def _transact(self, work: Callable[[sqlite3.Connection], T], *, on_loop: bool) -> T:
        """`work` in one transaction: `on_loop`, on the event loop if it can start there at
        once; else on the recorder's thread."""
        if on_loop and self._thread.idle:
            with contextlib.suppress(_LockTaken):
                return self._on_loop(work)
        return await self._thread.call(functools.partial(self._in_turn, work))

    def _on_loop(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """What `work` returned; _LockTaken, with nothing done, if a lock is taken."""
        if self._loop_connection is None:
            self._loop_connection = _open_for_the_loop(self._path)
        conn = self._loop_connection
        with self._turns.held_if_free() as held:
            if not held:
                raise _LockTaken
            try:
                # The write lock now or never (the busy timeout is 0): `work`'s statements
                # then find it held, and its commit needs no other.
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as error:
                if error.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:
                    raise _LockTaken from None
                raise
            try:
                result = work(conn)  # commits, or rolls back and raises
            finally:
                if conn.in_transaction:  # `work` failed before its own transaction began
                    conn.rollback()
        self._loop_commits += 1
        if self._loop_commits % CHECKPOINT_EVERY == 0:
            # The loop's connection never checkpoints itself: copying the log into the
            # database file ends with an fsync, which the thread waits for instead.
            self._thread.post(self._checkpoint).add_done_callback(_log_failure)
        return result

    def _in_turn(self, work: Callable[[sqlite3.Connection], T]) -> T:
        connection = self._thread_connection()
        with self._turns.held():
            return work(connection)

    def _checkpoint(self) -> None:
        # PASSIVE: copies what no reader still needs, and waits for no one.
        self._thread_connection().execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _thread_connection(self) -> sqlite3.Connection:
        # Opened on first use, on the thread that then always uses it.
        if self._connection is None:
            self._connection = open_sqlite_file(self._path)
        return self._connection

    def _disconnect(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class _WriterThread:
    """One thread running the recorder's calls in order, handing each result back to the
    caller's event loop: a queue and `call_soon_threadsafe`, as aiosqlite's thread does.

    Not a one-thread ThreadPoolExecutor: its worker keeps the GIL for its own bookkeeping
    just as the event loop wakes up for the result, which made a round trip about twice
    as long."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        # Calls queued or running, counted on the event loop's thread (put and settled).
        self._unsettled = 0
        # A daemon: a recorder never closed (a test's) must not keep the interpreter alive.
        self._thread = threading.Thread(target=self._serve, name="recorder", daemon=True)
        self._thread.start()

    @property
    def idle(self) -> bool:
        """No call is queued or running: its connection holds no transaction."""
        return self._unsettled == 0

    async def call(self, work: Callable[[], T]) -> T:
        """`work()` on the thread, after the calls before it. A cancelled caller stops
        waiting; the work, once queued, is still done."""
        return await self.post(work)

    def post(self, work: Callable[[], T]) -> asyncio.Future[T]:
        """`work()` on the thread, after the calls before it; its future, for a caller that
        may not wait (a failure is logged then, not lost)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._unsettled += 1
        self._calls.put(_Call(work, loop, future))
        return future

    def stop(self) -> None:
        """The thread ends after the calls already queued."""
        self._calls.put(None)

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            try:
                result, error = call.work(), None
            except BaseException as failure:
                result, error = None, failure
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                call.loop.call_soon_threadsafe(self._settle, call.future, result, error)

    def _settle(
        self, future: asyncio.Future[Any], result: Any, error: BaseException | None
    ) -> None:
        # Counted here, once the work is over, even for a caller that went away before.
        self._unsettled -= 1
        if future.cancelled():
            return  # its caller went away; the work was done all the same
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


@dataclass(frozen=True, slots=True)
class _Call:
    work: Callable[[], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


class _LockTaken(Exception):
    """Another process's recorder, or another connection, is writing now."""


class _Ended(Exception):
    """The batch's one end came after its run had ended: rolled back, answered False."""


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and (error := future.exception()) is not None:
        _log.warning("the recorder's checkpoint failed: %s", error)


def _open_for_the_loop(path: str) -> sqlite3.Connection:
    """The event loop's connection: it never waits for a lock (busy timeout 0), and never
    checkpoints on its own (the recorder's thread does, every CHECKPOINT_EVERY commits)."""
    connection = open_sqlite_file(path)
    connection.execute("PRAGMA busy_timeout=0")
    connection.execute("PRAGMA wal_autocheckpoint=0")
    return connection


class _TurnRow(NamedTuple):
    user: str
    assistant: str
    created_at: datetime


_Rows = tuple["_Statement", list[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class _Batch:
    """A batch's statements with their rows, run as one transaction. The rows are bound
    (JSON text, times as text) where the transaction runs: on the writer's thread, that
    work leaves the event loop."""

    runs: _Rows
    ends: _Rows
    nodes: _Rows
    turns: _Rows
    log: _Rows
    first_end: str  # the run of the batch's only end, when it is alone
    alone: bool

    def commit(self, conn: sqlite3.Connection) -> bool:
        with _transaction(conn):
            _execute(conn, self.runs)
            ends = len(self.ends[1])
            if ends and _execute(conn, self.ends) != ends:
                # An end whose run had already ended: nothing of the batch is written.
                if not self.alone:
                    raise Lost
                if conn.execute(_RUN_EXISTS, (self.first_end,)).fetchone() is None:
                    raise NotFound(f"run {self.first_end} not found")
                raise _Ended
            for rows in (self.nodes, self.turns, self.log):
                _execute(conn, rows)
        return True


def _execute(conn: sqlite3.Connection, rows: _Rows) -> int:
    """The statement for each of the rows; how many rows it changed."""
    statement, values = rows
    if not values:
        return 0
    return conn.executemany(*statement.bind(values)).rowcount


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """Commits what the block wrote when it ends (a return included), or rolls all of it
    back if it raised."""
    try:
        yield
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


class _TakeTurns:
    """The recorders of every process on one SQLite file take turns through a lock file.

    Colliding on SQLite's own write lock, the loser's busy handler sleeps a millisecond or
    more and holds its connection meanwhile: with `serve --workers 2` that stalled both
    processes (fewer runs a second with two processes than with one). A lock the kernel
    hands to the next waiter at once avoids the collisions. Taken on the recorder's
    thread, which waits for it in the kernel."""

    def __init__(self, path: Path) -> None:
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        fd = self._descriptor()
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def held_if_free(self) -> Iterator[bool]:
        """Holds the lock for the block if no other process does (True), without waiting."""
        fd = self._descriptor()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _descriptor(self) -> int:
        if self._fd is None:
            raise RuntimeError("the recorder is closed")
        return self._fd


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


@dataclass(frozen=True, slots=True)
class _Query:
    """A Core statement compiled once for SQLite: `?` placeholders in the order of its bound
    names. Bound values are strings and numbers, which need no processing."""

    text: str
    names: tuple[str, ...]
    defaults: dict[str, Any]  # values the statement binds itself, such as its LIMIT

    @classmethod
    def compiled(cls, statement: ClauseElement, dialect: Dialect) -> _Query:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)  # SQLite's paramstyle is positional (qmark)
        return cls(compiled.string, tuple(compiled.positiontup or ()), dict(compiled.params))

    def bind(self, values: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
        return self.text, tuple(values.get(name, self.defaults.get(name)) for name in self.names)


class _Statements:
    def __init__(self, dialect: Dialect) -> None:
        self.spend_credit = _Query.compiled(spend_credit_statement(), dialect)
        self.recent_turns = _Query.compiled(recent_turns_statement(), dialect)
        created_at = _TURNS.c.created_at.type.dialect_impl(dialect)
        read = created_at.result_processor(dialect, None)
        assert read is not None  # SQLite keeps times as text

        def read_time(value: str) -> datetime:
            time = read(value)
            assert isinstance(time, datetime)  # the column is NOT NULL
            return time

        self.read_time = read_time
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
            "owner",
            "error_code",
            "webhook_url",
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
        self.insert_log = self._insert(
            dialect, _LOG, ("run_id", "first_seq", "last_seq", "frames", "created_at")
        )
        finish_columns = (
            "status",
            "output",
            "error",
            "error_node",
            "error_code",
            "total_time",
            "finished_at",
        )
        assignments = ", ".join(f"{quote(name)} = ?" for name in finish_columns)
        # Only a live run ends: a run's status moves forward once.
        live = ", ".join(f"'{status}'" for status in LIVE_STATUSES)
        self.finish_run = _Statement(
            text=f"UPDATE {quote(_RUNS.name)} SET {assignments} "
            f"WHERE {quote('id')} = ? AND {quote('status')} IN ({live})",
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
