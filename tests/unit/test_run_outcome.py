"""A run's outcome is recorded once, even when its consumer is cancelled (the client left,
or a cancel call came) while that outcome is being written."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from flowport.admission import PreparedRun
from flowport.auth import Authenticator
from flowport.demo import BMI
from flowport.engine import RunEvent, RunSucceeded
from flowport.run_path import RunPath
from flowport.storage import (
    Database,
    create_api_key,
    create_workflow,
    get_or_create_account,
    get_run,
    publish_workflow,
)
from tests.unit.local_runs import local_run_path


class HeldOutcome:
    """Holds the recorder's write of a run's outcome until released."""

    def __init__(self, runs: RunPath) -> None:
        self.reached = asyncio.Event()
        self.release = asyncio.Event()
        recorder = runs.recorder
        commit = recorder._commit

        async def held(batch: list[Any], *, alone: bool) -> bool:
            if any(item.end is not None for item in batch):
                self.reached.set()
                await self.release.wait()
            return await commit(batch, alone=alone)

        recorder._commit = held  # type: ignore[method-assign]


async def _prepared(db: Database, runs: RunPath) -> tuple[str, PreparedRun]:
    async with db.session() as session:
        account = await get_or_create_account(session, name="acme")
        workflow = await create_workflow(
            session, account_id=account.id, name="BMI", visibility="private", definition=BMI
        )
        await publish_workflow(session, account_id=account.id, workflow_id=workflow.id)
        _, secret = await create_api_key(session, account_id=account.id, name="k", scopes=["run"])
    principal = await Authenticator(db).authenticate(secret)
    run = await runs.admission.admit(
        principal, workflow_id=workflow.id, raw_input={"height": 1.8, "weight": 75}, session_id=None
    )
    return account.id, run


async def _recorded(db: Database, account_id: str, run_id: str) -> tuple[str, list[str]]:
    async with db.session() as session:
        record, nodes = await get_run(session, account_id=account_id, run_id=run_id)
    return record.status, [node.node_id for node in nodes]


async def test_a_client_leaving_while_the_outcome_is_written_leaves_it_as_it_was(
    db: Database, tmp_path: Path
):
    async with local_run_path(db, tmp_path) as runs:
        held = HeldOutcome(runs)
        account_id, run = await _prepared(db, runs)

        consumer = asyncio.create_task(runs.execution.run_to_end(run))
        await asyncio.wait_for(held.reached.wait(), 5)
        consumer.cancel()  # the client goes away
        await asyncio.sleep(0.05)
        held.release.set()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(consumer, 5)

    status, nodes = await _recorded(db, account_id, run.run_id)
    # Succeeded, with each node once: no "cancelled" outcome written after it.
    assert status == "succeeded"
    assert sorted(nodes) == sorted(node["id"] for node in BMI["nodes"])


async def test_a_cancel_call_while_the_outcome_is_written_gets_that_outcome(
    db: Database, tmp_path: Path
):
    async with local_run_path(db, tmp_path) as runs:
        held = HeldOutcome(runs)
        account_id, run = await _prepared(db, runs)

        live = runs.execution.start(run)

        async def consume() -> list[RunEvent]:
            events: list[RunEvent] = []
            async for batch in live.follow(heartbeat_s=60):
                events.extend(batch.events if batch is not None else ())
            return events

        consumer = asyncio.create_task(consume())
        await asyncio.wait_for(held.reached.wait(), 5)
        cancelling = asyncio.create_task(runs.execution.cancel_here(run.run_id))
        await asyncio.sleep(0.05)
        held.release.set()
        events = await asyncio.wait_for(consumer, 5)
        assert await cancelling

    assert isinstance(events[-1], RunSucceeded) and events[-1].output == "您的BMI值是23.15"
    status, nodes = await _recorded(db, account_id, run.run_id)
    assert status == "succeeded"
    assert sorted(nodes) == sorted(node["id"] for node in BMI["nodes"])
