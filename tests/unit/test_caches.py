"""What the service caches (keys, published workflows, unlimited credits) and when it stops
trusting them: at once for changes made through it, after a second for changes made elsewhere."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from flowport.admission import UNLIMITED_CACHE_TTL_S
from flowport.auth import CACHE_TTL_S, Authenticator
from flowport.catalog import CACHE_TTL_S as WORKFLOW_CACHE_TTL_S
from flowport.demo import BMI
from flowport.errors import CreditsExhausted, Unauthenticated
from flowport.replicas import Replica
from flowport.run_path import RunPath
from flowport.storage import (
    Database,
    create_api_key,
    create_workflow,
    get_or_create_account,
    publish_workflow,
    revoke_api_key,
    set_credits,
    update_workflow_draft,
)
from tests.unit.local_runs import local_run_path, run_once


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _key(db: Database) -> tuple[str, str, str]:
    async with db.session() as session:
        account = await get_or_create_account(session, name="acme")
        key, secret = await create_api_key(session, account_id=account.id, name="k", scopes=["run"])
    return account.id, key.id, secret


async def _revoke_elsewhere(db: Database, account_id: str, key_id: str) -> None:
    """As the CLI or another replica without Redis would: straight in the database."""
    async with db.session() as session:
        await revoke_api_key(session, account_id=account_id, key_id=key_id)


async def test_a_key_revoked_through_the_service_fails_on_the_next_call(db: Database):
    account_id, key_id, secret = await _key(db)
    auth = Authenticator(db, clock=Clock())
    assert (await auth.authenticate(secret)).key_id == key_id

    await _revoke_elsewhere(db, account_id, key_id)
    auth.forget(key_id)

    with pytest.raises(Unauthenticated):
        await auth.authenticate(secret)


async def test_a_key_revoked_elsewhere_fails_once_the_cache_expires(db: Database):
    account_id, key_id, secret = await _key(db)
    clock = Clock()
    auth = Authenticator(db, clock=clock)
    await auth.authenticate(secret)

    await _revoke_elsewhere(db, account_id, key_id)
    # Still trusted from the cache within CACHE_TTL_S (1 s) ...
    assert (await auth.authenticate(secret)).key_id == key_id
    clock.now += CACHE_TTL_S
    # ... and refused from then on.
    with pytest.raises(Unauthenticated):
        await auth.authenticate(secret)


async def test_a_key_revoked_on_another_replica_fails_here_on_the_next_call(db: Database):
    account_id, key_id, secret = await _key(db)
    here = Authenticator(db)
    # Two replicas of one database, each with its channel, as create_server wires them.
    lease = {"lease_s": 30.0, "log_retention_s": 60.0}
    replica_here, replica_there = Replica(db, **lease), Replica(db, **lease)
    replica_here.on("forget-key", here.forget)
    await replica_here.start()
    await replica_there.start()
    try:
        await here.authenticate(secret)

        await _revoke_elsewhere(db, account_id, key_id)
        await replica_there.publish("forget-key", key_id)
        await asyncio.sleep(0.1)  # the message crosses to the other process's socket

        with pytest.raises(Unauthenticated):
            await here.authenticate(secret)
    finally:
        await replica_there.stop()
        await replica_here.stop()


async def _published(db: Database, output: str) -> tuple[str, str]:
    definition = {**BMI, "nodes": [*BMI["nodes"][:2], {**BMI["nodes"][2], "output": output}]}
    async with db.session() as session:
        account = await get_or_create_account(session, name="acme")
        workflow = await create_workflow(
            session,
            account_id=account.id,
            name="BMI",
            visibility="private",
            definition=definition,
        )
        await publish_workflow(session, account_id=account.id, workflow_id=workflow.id)
    return account.id, workflow.id


async def _republish(db: Database, account_id: str, workflow_id: str, output: str) -> None:
    definition = {**BMI, "nodes": [*BMI["nodes"][:2], {**BMI["nodes"][2], "output": output}]}
    async with db.session() as session:
        await update_workflow_draft(
            session,
            account_id=account_id,
            workflow_id=workflow_id,
            name="BMI",
            visibility="private",
            definition=definition,
        )
        await publish_workflow(session, account_id=account_id, workflow_id=workflow_id)


async def _output(runs: RunPath, db: Database, account_id: str, workflow_id: str) -> str:
    result = await run_once(runs, db, account_id, workflow_id, {"height": 2, "weight": 80})
    return result.output


async def test_a_new_version_runs_next_when_published_here_and_within_a_second_elsewhere(
    db: Database, tmp_path: Path
):
    account_id, workflow_id = await _published(db, "v1 {{ calc.output }}")
    clock = Clock()
    async with local_run_path(db, tmp_path, clock=clock) as runs:
        assert await _output(runs, db, account_id, workflow_id) == "v1 20.0"

        # Published by a process that tells no replica: the cached version runs until it
        # expires.
        await _republish(db, account_id, workflow_id, "v2 {{ calc.output }}")
        assert await _output(runs, db, account_id, workflow_id) == "v1 20.0"
        clock.now += WORKFLOW_CACHE_TTL_S
        assert await _output(runs, db, account_id, workflow_id) == "v2 20.0"

        # Published through a replica (which then has every replica forget the workflow):
        # the next run uses it.
        await _republish(db, account_id, workflow_id, "v3 {{ calc.output }}")
        runs.catalog.forget(workflow_id)
        assert await _output(runs, db, account_id, workflow_id) == "v3 20.0"


async def test_unlimited_credits_are_trusted_a_second_and_a_limit_applies_after(
    db: Database, tmp_path: Path
):
    account_id, workflow_id = await _published(db, "{{ calc.output }}")
    clock = Clock()
    async with local_run_path(db, tmp_path, clock=clock) as runs:
        assert await _output(runs, db, account_id, workflow_id) == "20.0"

        async with db.session() as session:
            await set_credits(session, name="acme", credits=0)
        clock.now += UNLIMITED_CACHE_TTL_S
        with pytest.raises(CreditsExhausted):
            await _output(runs, db, account_id, workflow_id)
