"""Runs: one row per workflow call and one per node it ran; the Recorder writes how a run ends."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlmodel import and_, col, func, or_, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from flowport.errors import NotFound
from flowport.storage.models import NodeRun, Run, utc_now


class NodeRunRecord(Protocol):
    """What the engine reports about one node once the run is over: its NodeFinished event,
    which becomes the node's row as it is written."""

    @property
    def node_id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def time_spend(self) -> float: ...
    @property
    def inputs(self) -> dict[str, Any] | None: ...
    @property
    def output(self) -> dict[str, Any] | None: ...
    @property
    def error(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class NewRun:
    """A run about to start: what its row says before it ends."""

    run_id: str
    account_id: str
    key_id: str | None
    workflow_id: str
    version: int
    inputs: dict[str, Any]
    session_id: str | None
    # The replica that executes it; none while a background run waits in the queue.
    owner: str | None = None
    # "queued" for a background run, else it starts "running".
    status: str = "running"
    webhook_url: str | None = None
    # When it was admitted: its row may be written later (with its end).
    started_at: datetime = field(default_factory=utc_now)

    def row(self) -> dict[str, Any]:
        """Every column of its row in the runs table, status "running"."""
        return {
            "id": self.run_id,
            "account_id": self.account_id,
            "key_id": self.key_id,
            "workflow_id": self.workflow_id,
            "version": self.version,
            "session_id": self.session_id,
            "status": self.status,
            "inputs": self.inputs,
            "output": None,
            "error": None,
            "error_node": None,
            "started_at": self.started_at,
            "finished_at": None,
            "total_time": None,
            "owner": self.owner,
            "error_code": None,
            "webhook_url": self.webhook_url,
        }


async def create_run(session: AsyncSession, run: NewRun) -> Run:
    row = Run(**run.row())
    session.add(row)
    await session.commit()
    return row


async def get_run(
    session: AsyncSession, *, account_id: str, run_id: str
) -> tuple[Run, list[NodeRun]]:
    """The run and its nodes in the order they started; another account's run is NotFound."""
    result = await session.exec(
        select(Run)
        .where(Run.id == run_id, Run.account_id == account_id)
        .execution_options(populate_existing=True)
    )
    run = result.first()
    if run is None:
        raise NotFound(f"run {run_id} not found")
    nodes = await session.exec(
        select(NodeRun)
        .where(NodeRun.run_id == run_id)
        .order_by(col(NodeRun.started_at), col(NodeRun.id))
    )
    return run, list(nodes.all())


async def run_status(session: AsyncSession, *, run_id: str) -> str | None:
    """The run's status as recorded now; None if it has no row."""
    result = await session.exec(
        select(Run.status).where(Run.id == run_id).execution_options(populate_existing=True)
    )
    return result.first()


async def claim_run(session: AsyncSession, *, run_id: str, owner: str) -> bool:
    """A queued run becomes `owner`'s, running: True for the one replica that got it."""
    result = await session.exec(
        update(Run)
        .where(col(Run.id) == run_id, col(Run.status) == "queued")
        .values(status="running", owner=owner, started_at=utc_now())
    )
    await session.commit()
    return bool(result.rowcount)


async def count_queued(session: AsyncSession, *, account_id: str) -> int:
    """How many of the account's background runs wait in the queue."""
    result = await session.exec(
        select(func.count())
        .select_from(Run)
        .where(col(Run.status) == "queued", col(Run.account_id) == account_id)
    )
    return int(result.one())


async def queued_runs(session: AsyncSession, *, older_than_s: float, limit: int) -> list[str]:
    """The oldest runs that have waited in the queue longer than `older_than_s`, at most
    `limit` of them."""
    cutoff = utc_now() - timedelta(seconds=older_than_s)
    result = await session.exec(
        select(Run.id)
        .where(col(Run.status) == "queued", col(Run.started_at) < cutoff)
        .order_by(col(Run.started_at))
        .limit(limit)
    )
    return list(result.all())


async def run_and_nodes(session: AsyncSession, *, run_id: str) -> tuple[Run, list[NodeRun]]:
    """The run and its nodes, whichever account's: for work that carries a run's id only
    (a job), never for a caller's request."""
    run = await session.get(Run, run_id, populate_existing=True)
    if run is None:
        raise NotFound(f"run {run_id} not found")
    return await get_run(session, account_id=run.account_id, run_id=run_id)


async def cancel_queued(session: AsyncSession, *, run_id: str, reason: str, code: int) -> bool:
    """A background run still waiting in the queue ends cancelled (`reason`, REST status
    `code`): True unless a replica took it (or it ended) first."""
    result = await session.exec(
        update(Run)
        .where(col(Run.id) == run_id, col(Run.status) == "queued")
        .values(
            status="cancelled", error=reason, error_code=code, total_time=0.0, finished_at=utc_now()
        )
    )
    await session.commit()
    return bool(result.rowcount)


async def list_runs(
    session: AsyncSession,
    *,
    account_id: str,
    limit: int,
    workflow_id: str | None = None,
    status: str | None = None,
    after: datetime | None = None,
    before: datetime | None = None,
    cursor: tuple[datetime, str] | None = None,
) -> tuple[list[Run], tuple[datetime, str] | None]:
    """The account's runs, newest first (by start, then id), filtered; past `cursor` (the last
    run of the page before) when given. Returns the page and the next page's cursor, None on
    the last page."""
    query = select(Run).where(Run.account_id == account_id)
    if workflow_id is not None:
        query = query.where(Run.workflow_id == workflow_id)
    if status is not None:
        query = query.where(Run.status == status)
    if after is not None:
        query = query.where(col(Run.started_at) > after)
    if before is not None:
        query = query.where(col(Run.started_at) < before)
    if cursor is not None:
        started, run_id = cursor
        query = query.where(
            or_(
                col(Run.started_at) < started,
                and_(col(Run.started_at) == started, col(Run.id) < run_id),
            )
        )
    result = await session.exec(
        query.order_by(col(Run.started_at).desc(), col(Run.id).desc()).limit(limit + 1)
    )
    runs = list(result.all())
    if len(runs) <= limit:
        return runs, None
    runs = runs[:limit]
    return runs, (runs[-1].started_at, runs[-1].id)
