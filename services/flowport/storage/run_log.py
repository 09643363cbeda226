"""A run's log of events: the frames of its stream, kept for replay after it is written."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from flowport.storage.models import RunLogEntry


async def log_after(session: AsyncSession, *, run_id: str, after: int) -> list[RunLogEntry]:
    """The run's entries holding frames after `after`, in order (the first may also hold
    frames up to `after`: its reader skips them)."""
    result = await session.exec(
        select(RunLogEntry)
        .where(col(RunLogEntry.run_id) == run_id, col(RunLogEntry.last_seq) > after)
        .order_by(col(RunLogEntry.first_seq))
    )
    return list(result.all())


async def last_seq(session: AsyncSession, *, run_id: str) -> int:
    """The id of the run's last logged frame; 0 when none is."""
    result = await session.exec(
        select(func.max(RunLogEntry.last_seq)).where(col(RunLogEntry.run_id) == run_id)
    )
    return result.one() or 0


async def append_frame(session: AsyncSession, *, run_id: str, frame: bytes) -> None:
    """Adds `frame` (SSE, without its id line) after the run's last logged frame, in the
    session's transaction: the caller commits it with whatever ended the run. A run with no
    log (a blocking run's events come from its record) is left without one."""
    seq = await last_seq(session, run_id=run_id) + 1
    if seq == 1:
        return
    text = f"id: {seq}\n".encode() + frame
    session.add(RunLogEntry(run_id=run_id, first_seq=seq, last_seq=seq, frames=text.decode()))


async def expire_log(session: AsyncSession, *, before: datetime) -> int:
    """Drops the logs of runs that have an entry written before `before`, each whole (a
    replay reads a run's log from its first frame, or composes the run from its record when
    it has none); returns how many entries went."""
    old = select(RunLogEntry.run_id).where(col(RunLogEntry.created_at) < before).distinct()
    result = await session.exec(delete(RunLogEntry).where(col(RunLogEntry.run_id).in_(old)))
    await session.commit()
    return int(result.rowcount)
