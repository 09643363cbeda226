"""Replicas: the live `flowport serve` processes, their heartbeats, and the runs of dead ones."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from flowport.storage.models import Replica, Run, utc_now
from flowport.storage.run_log import append_frame


async def register_replica(session: AsyncSession, *, replica_id: str, host: str, pid: int) -> None:
    session.add(Replica(id=replica_id, host=host, pid=pid))
    await session.commit()


async def renew_lease(session: AsyncSession, *, replica_id: str, host: str, pid: int) -> bool:
    """The replica's heartbeat, now. False if its row was gone (the others took it for dead
    after a stall longer than the lease): it is registered again, and its runs that were
    failed meanwhile stay failed."""
    result = await session.exec(
        update(Replica).where(col(Replica.id) == replica_id).values(heartbeat_at=utc_now())
    )
    if result.rowcount == 0:
        session.add(Replica(id=replica_id, host=host, pid=pid))
    await session.commit()
    return bool(result.rowcount)


async def remove_replica(session: AsyncSession, *, replica_id: str) -> None:
    await session.exec(delete(Replica).where(col(Replica.id) == replica_id))
    await session.commit()


async def live_replicas(session: AsyncSession, *, lease_s: float) -> list[Replica]:
    """The replicas whose lease has not expired, oldest first."""
    cutoff = utc_now() - timedelta(seconds=lease_s)
    result = await session.exec(
        select(Replica)
        .where(col(Replica.heartbeat_at) >= cutoff)
        .order_by(col(Replica.started_at), col(Replica.id))
    )
    return list(result.all())


async def fail_orphaned_runs(
    session: AsyncSession, *, lease_s: float, reason: str, code: int, last_frame: bytes
) -> list[str]:
    """Fails every running run whose owner's lease expired (or that has no owner: a run of
    a version before replicas) with `reason` and the REST status `code`, ends its log (if
    it has one: a stream's) with `last_frame`, forgets the dead replicas, and returns the
    runs' ids: one transaction. A run whose owner is alive is never touched, and one that
    ended meanwhile stays as it ended."""
    now = utc_now()
    alive = select(Replica.id).where(col(Replica.heartbeat_at) >= now - timedelta(seconds=lease_s))
    failed = await session.exec(
        update(Run)
        .where(
            col(Run.status) == "running",
            or_(col(Run.owner).is_(None), col(Run.owner).not_in(alive)),
        )
        .values(status="failed", error=reason, error_code=code, finished_at=now)
        .returning(col(Run.id))
    )
    run_ids = [row[0] for row in failed.all()]
    for run_id in run_ids:
        await append_frame(session, run_id=run_id, frame=last_frame)
    await session.exec(
        delete(Replica).where(col(Replica.heartbeat_at) < now - timedelta(seconds=lease_s))
    )
    await session.commit()
    return run_ids
