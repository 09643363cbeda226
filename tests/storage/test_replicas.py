"""Replicas' leases and the reaper: only the runs of replicas whose lease expired are failed,
once, with their logs ended; a run's status never moves back."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import col, update
from sqlmodel.ext.asyncio.session import AsyncSession

from flowport.ids import new_id
from flowport.storage import (
    Account,
    Database,
    LogEntry,
    NewRun,
    Recorder,
    Replica,
    Workflow,
    create_run,
    create_workflow,
    fail_orphaned_runs,
    get_run,
    live_replicas,
    log_after,
    publish_workflow,
    register_replica,
    renew_lease,
)
from flowport.storage.models import utc_now

LEASE_S = 30.0
LAST_FRAME = b'event: error\ndata: {"Node":null,"code":503,"message":"gone"}\n\n'


@pytest.fixture
async def workflow(session: AsyncSession, account: Account) -> Workflow:
    workflow = await create_workflow(
        session, account_id=account.id, name="BMI", visibility="private", definition={}
    )
    await publish_workflow(session, account_id=account.id, workflow_id=workflow.id)
    return workflow


async def _replica(session: AsyncSession, *, silent_for_s: float = 0.0) -> str:
    replica_id = new_id("rep", 16)
    await register_replica(session, replica_id=replica_id, host="h", pid=1)
    if silent_for_s:
        await session.exec(
            update(Replica)
            .where(col(Replica.id) == replica_id)
            .values(heartbeat_at=utc_now() - timedelta(seconds=silent_for_s))
        )
        await session.commit()
    return replica_id


async def _run(session: AsyncSession, account: Account, workflow: Workflow, owner: str | None):
    run = await create_run(
        session,
        NewRun(
            run_id=new_id("run", 20),
            account_id=account.id,
            key_id=None,
            workflow_id=workflow.id,
            version=1,
            inputs={},
            session_id=None,
            owner=owner,
        ),
    )
    return run.id


async def _reap(session: AsyncSession) -> list[str]:
    return await fail_orphaned_runs(
        session,
        lease_s=LEASE_S,
        reason="the replica running it stopped",
        code=503,
        last_frame=LAST_FRAME,
    )


async def test_only_runs_of_replicas_whose_lease_expired_are_failed(
    db: Database, session: AsyncSession, account: Account, workflow: Workflow
):
    alive = await _replica(session)
    dead = await _replica(session, silent_for_s=LEASE_S + 1)
    live_run = await _run(session, account, workflow, alive)
    orphans = [
        await _run(session, account, workflow, dead),
        await _run(session, account, workflow, None),
    ]
    ended = await _run(session, account, workflow, dead)
    await Recorder(db).finish(
        run_id=ended, status="succeeded", output="ok", error=None, error_node=None,
        total_time=0.1, node_runs=[],
    )  # fmt: skip

    assert sorted(await _reap(session)) == sorted(orphans)
    assert await _reap(session) == []  # once

    for run_id in orphans:
        run, _ = await get_run(session, account_id=account.id, run_id=run_id)
        assert (run.status, run.error, run.error_code) == (
            "failed",
            "the replica running it stopped",
            503,
        )
        assert run.finished_at is not None
        # No log was begun (their events come from their records): none is made.
        assert await log_after(session, run_id=run_id, after=0) == []
    assert (await get_run(session, account_id=account.id, run_id=live_run))[0].status == "running"
    assert (await get_run(session, account_id=account.id, run_id=ended))[0].status == "succeeded"
    # The dead replica is forgotten; the live one stays.
    assert [r.id for r in await live_replicas(session, lease_s=LEASE_S)] == [alive]


async def test_a_logged_runs_log_ends_with_the_reapers_frame(
    db: Database, session: AsyncSession, account: Account, workflow: Workflow
):
    dead = await _replica(session, silent_for_s=LEASE_S + 1)
    run_id = await _run(session, account, workflow, dead)
    recorder = Recorder(db)
    recorder.log(
        LogEntry(run_id, 1, 2, "id: 1\nevent: msg\ndata: {}\n\nid: 2\nevent: msg\ndata: {}\n\n")
    )
    await recorder.flushed()

    assert await _reap(session) == [run_id]
    entries = await log_after(session, run_id=run_id, after=0)
    assert [(e.first_seq, e.last_seq) for e in entries] == [(1, 2), (3, 3)]
    assert entries[-1].frames == "id: 3\n" + LAST_FRAME.decode()


async def test_a_finish_after_the_reaper_changes_nothing(
    db: Database, session: AsyncSession, account: Account, workflow: Workflow
):
    dead = await _replica(session, silent_for_s=LEASE_S + 1)
    run_id = await _run(session, account, workflow, dead)
    await _reap(session)

    # The replica was only slow: its outcome comes after the reaper's, and loses.
    ended = await Recorder(db).finish(
        run_id=run_id, status="succeeded", output="late", error=None, error_node=None,
        total_time=0.1, node_runs=[],
    )  # fmt: skip

    assert ended is False
    run, nodes = await get_run(session, account_id=account.id, run_id=run_id)
    assert (run.status, run.output, nodes) == ("failed", None, [])


async def test_a_replica_whose_row_was_reaped_registers_again_when_it_renews(
    session: AsyncSession,
):
    replica_id = await _replica(session, silent_for_s=LEASE_S + 1)
    await _reap(session)
    assert await live_replicas(session, lease_s=LEASE_S) == []

    assert await renew_lease(session, replica_id=replica_id, host="h", pid=1) is False
    assert await renew_lease(session, replica_id=replica_id, host="h", pid=1) is True
    assert [r.id for r in await live_replicas(session, lease_s=LEASE_S)] == [replica_id]
