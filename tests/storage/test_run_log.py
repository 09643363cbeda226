"""A run's log: read after an id, and dropped whole once any of it is past the retention."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import col, update
from sqlmodel.ext.asyncio.session import AsyncSession

from flowport.storage import Database, LogEntry, Recorder, RunLogEntry, expire_log, log_after
from flowport.storage.models import utc_now


def _frames(first: int, last: int) -> str:
    return "".join(f"id: {n}\nevent: msg\ndata: {{}}\n\n" for n in range(first, last + 1))


async def test_a_logs_entries_are_read_after_an_id(db: Database, session: AsyncSession):
    recorder = Recorder(db)
    recorder.log(LogEntry("run_a", 1, 3, _frames(1, 3)))
    await recorder.flushed()
    recorder.log(LogEntry("run_a", 4, 5, _frames(4, 5)))
    await recorder.close()

    assert [
        (e.first_seq, e.last_seq) for e in await log_after(session, run_id="run_a", after=0)
    ] == [(1, 3), (4, 5)]
    # The entry holding id 3 holds earlier ones too: its reader skips them.
    assert [e.first_seq for e in await log_after(session, run_id="run_a", after=2)] == [1, 4]
    assert [e.first_seq for e in await log_after(session, run_id="run_a", after=3)] == [4]
    assert await log_after(session, run_id="run_a", after=5) == []


async def test_expiry_drops_a_runs_log_whole_and_keeps_younger_ones(
    db: Database, session: AsyncSession
):
    recorder = Recorder(db)
    for run_id in ("run_old", "run_young"):
        recorder.log(LogEntry(run_id, 1, 2, _frames(1, 2)))
        await recorder.flushed()
        recorder.log(LogEntry(run_id, 3, 3, _frames(3, 3)))
        await recorder.flushed()
    await recorder.close()
    # The old run's first entry was written two days ago, its last one just now.
    await session.exec(
        update(RunLogEntry)
        .where(col(RunLogEntry.run_id) == "run_old", col(RunLogEntry.first_seq) == 1)
        .values(created_at=utc_now() - timedelta(days=2))
    )
    await session.commit()

    assert await expire_log(session, before=utc_now() - timedelta(days=1)) == 2
    assert await log_after(session, run_id="run_old", after=0) == []
    assert len(await log_after(session, run_id="run_young", after=0)) == 2
