"""Runs: one row per workflow call and one per node it ran; the Recorder writes how a run ends."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from flowport.errors import NotFound
from flowport.storage.models import NodeRun, Run, utc_now


@dataclass(frozen=True)
class NodeRunRecord:
    """What the engine reports about one node once the run is over."""

    node_id: str
    node_type: str
    name: str
    status: str
    started_at: datetime
    time_spend: float
    inputs: dict[str, Any] | None
    output: dict[str, Any] | None
    error: str | None


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
    # The replica that executes it.
    owner: str | None = None

    def row(self) -> dict[str, Any]:
        """Every column of its row in the runs table, status "running"."""
        return {
            "id": self.run_id,
            "account_id": self.account_id,
            "key_id": self.key_id,
            "workflow_id": self.workflow_id,
            "version": self.version,
            "session_id": self.session_id,
            "status": "running",
            "inputs": self.inputs,
            "output": None,
            "error": None,
            "error_node": None,
            "started_at": utc_now(),
            "finished_at": None,
            "total_time": None,
            "owner": self.owner,
            "error_code": None,
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
