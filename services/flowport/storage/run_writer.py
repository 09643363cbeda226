"""Run rows written in batches: the starts and ends of every run waiting at one moment go to the
database in one transaction, so a busy service commits once for many runs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, bindparam, insert, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from flowport.errors import InvalidArgument
from flowport.storage.accounts import spend_credit_left
from flowport.storage.database import Database
from flowport.storage.models import NodeRun, Run, SessionTurn, utc_now
from flowport.storage.runs import FINAL_STATUSES, NewRun, NodeRunRecord, create_run
from flowport.storage.sessions import recent_turns
from flowport.storage.sqlite_writes import Begun, SqliteWrites, check_finished

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
    """Every write of a run: `start` (its row; hands back the commit's future), `finish` (its
    outcome; returns once committed), and `begin` for a start that spends a credit or reads
    the session's memory first. Starts and ends that arrive while a transaction is running
    wait for it and then share the next one. A write finishes even if its caller is
    cancelled (a client that went away): its run is still accounted for."""

    def __init__(self, db: Database, *, busy: Callable[[], bool] = lambda: False) -> None:
        self._db = db
        # Whether the process has other calls in hand: their writes are worth waiting for,
        # so SQLite writes go to the writer's thread, and the next batch gathers them.
        # Otherwise (c=1) a write may run on the event loop, saving two thread hops.
        self._busy = busy
        self._pending: list[_Write] = []
        self._flusher: asyncio.Task[None] | None = None
        # SQLite's own path, set up on the first write (PostgreSQL's goes through the pool).
        self._sqlite: SqliteWrites | None = None
        self._writing: list[_Write] = []  # the batch being written

    def start(self, run: NewRun, *, delay_s: float = 0.0) -> asyncio.Future[None]:
        """The run's row, status "running" (what `create_run` writes), on its way: returns the
        future of its commit (shield it to wait: it belongs to the writer). A run whose
        client learns its id only with the outcome (a blocking answer) need not wait: its
        `finish` commits in the same transaction or a later one, so an outcome is never on
        record without its run, and a start and end meeting in one batch become one row,
        inserted finished. `delay_s`: the row may wait this long for other writes to go
        with it (a quick run's end: one commit instead of two), and is committed then."""
        write = _Write(self._future(), start=run.row())
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

    async def flushed(self) -> None:
        """Returns once every write submitted so far is committed (or has failed); delayed
        starts are committed now."""
        self._flush_soon()
        while self._flusher is not None and not self._flusher.done():
            await asyncio.wait({self._flusher})

    async def close(self) -> None:
        """Waits for the writes submitted until nothing is left to write (a run ending
        while this waits is written too), then closes SQLite's connection and lock file."""
        await self.flushed()
        if self._sqlite is not None:
            await self._sqlite.close()
            self._sqlite = None

    async def begin(self, run: NewRun, *, spend: bool, memory_ttl_s: float | None) -> Begun:
        """Starts a run that spends a credit (`spend`) or reads its session's memory
        (`memory_ttl_s`: turns no older than that): both, and its row, before it returns;
        an account without a credit left gets no row (`Begun.spent` False). On SQLite one
        transaction on the writer's own connection (through the engine it was ~10 trips to
        aiosqlite's thread, ~4 ms of CPU a run); on PostgreSQL through a session."""
        if self._db.engine.dialect.name == "sqlite":
            return await self._sqlite_writes().begin(
                run.row(), spend=spend, memory_ttl_s=memory_ttl_s, on_loop=not self._busy()
            )
        return await self._db.run(
            lambda session: _begin_in_session(session, run, spend, memory_ttl_s)
        )

    def _sqlite_writes(self) -> SqliteWrites:
        if self._sqlite is None:
            self._sqlite = SqliteWrites(self._db)
        return self._sqlite

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
            await self._sqlite_writes().write(
                list(starts.values()), ends, nodes, turns, on_loop=not self._busy()
            )
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
        check_finished(result.rowcount, len(ends), ends[0]["b_id"])


async def _begin_in_session(
    session: AsyncSession, run: NewRun, spend: bool, memory_ttl_s: float | None
) -> Begun:
    left = None
    if spend:
        spent, left = await spend_credit_left(session, account_id=run.account_id)
        if not spent:
            return Begun(False, None, [])
    turns = []
    if memory_ttl_s is not None and run.session_id is not None:
        turns = await recent_turns(
            session, account_id=run.account_id, session_id=run.session_id, ttl_s=memory_ttl_s
        )
    await create_run(session, run)
    return Begun(True, left, [(turn.user, turn.assistant) for turn in turns])


def _finished_row(start: dict[str, Any], end: dict[str, Any]) -> dict[str, Any]:
    """The start's row with the end's outcome (its b_ values) in place."""
    return start | {name.removeprefix("b_"): value for name, value in end.items() if name != "b_id"}


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
