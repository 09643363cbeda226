"""A run's row and its first message: a stream names its run only once the row is committed,
while the run itself starts without waiting for that commit."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from flowport.auth import Authenticator
from flowport.demo import BMI
from flowport.running import PreparedRun, RunService
from flowport.settings import Settings
from flowport.storage import (
    Database,
    create_api_key,
    create_workflow,
    get_or_create_account,
    publish_workflow,
)
from tests.unit.test_run_outcome import _recorded


async def _second_run(db: Database, runs: RunService) -> tuple[str, PreparedRun]:
    """A run of an account already seen to have unlimited credits: its row goes through the
    batching writer (an account's first run spends through the database)."""
    async with db.session() as session:
        account = await get_or_create_account(session, name="acme")
        workflow = await create_workflow(
            session, account_id=account.id, name="BMI", visibility="private", definition=BMI
        )
        await publish_workflow(session, account_id=account.id, workflow_id=workflow.id)
        _, secret = await create_api_key(session, account_id=account.id, name="k", scopes=["run"])
    principal = await Authenticator(db).authenticate(secret)
    body = {"height": 1.8, "weight": 75}
    first = await runs.prepare(principal, workflow_id=workflow.id, raw_input=body, session_id=None)
    await runs.run_to_end(first)
    run = await runs.prepare(principal, workflow_id=workflow.id, raw_input=body, session_id=None)
    return account.id, run


class HeldStarts:
    """Holds the writer's writes of run rows until released, or fails them."""

    def __init__(self, runs: RunService, *, fail: bool = False) -> None:
        self.reached = asyncio.Event()
        self.release = asyncio.Event()
        writer = runs._writer
        write = writer._write

        async def held(batch: list[Any]) -> None:
            if any(item.start is not None for item in batch):
                self.reached.set()
                await self.release.wait()
                if fail:
                    raise RuntimeError("disk full")
            await write(batch)

        writer._write = held  # type: ignore[method-assign]


async def test_a_stream_gets_its_first_batch_once_its_row_is_committed(
    db: Database, tmp_path: Path
):
    runs = RunService(db=db, llm=None, settings=Settings(data_dir=tmp_path))
    account_id, run = await _second_run(db, runs)
    held = HeldStarts(runs)
    batches = runs.batches(run)
    first = asyncio.ensure_future(anext(batches))

    await asyncio.wait_for(held.reached.wait(), 5)
    await asyncio.sleep(0.05)  # the run's template nodes have long finished by now
    assert not first.done()
    held.release.set()
    batch = await asyncio.wait_for(first, 5)

    # Every event had happened meanwhile: the one batch carries them all, outcome recorded.
    assert [type(event).__name__ for event in (batch[0], batch[-1])] == [
        "RunStarted",
        "RunSucceeded",
    ]
    assert await _recorded(db, account_id, run.run_id) == (
        "succeeded",
        ["start", "calc", "end"],
    )
    await batches.aclose()
    await runs.aclose()


async def test_a_stream_whose_row_cannot_be_written_fails_before_any_batch(
    db: Database, tmp_path: Path
):
    runs = RunService(db=db, llm=None, settings=Settings(data_dir=tmp_path))
    _, run = await _second_run(db, runs)
    held = HeldStarts(runs, fail=True)
    held.release.set()

    with pytest.raises(RuntimeError, match="disk full"):
        await anext(runs.batches(run))
    await runs.aclose()
