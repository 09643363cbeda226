"""What the service caches (keys, published workflows, unlimited credits) and when it stops
trusting them: at once for changes made through it, after a second for changes made elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowport.auth import CACHE_TTL_S, Authenticator
from flowport.demo import BMI
from flowport.errors import CreditsExhausted, Unauthenticated
from flowport.running import UNLIMITED_CACHE_TTL_S, WORKFLOW_CACHE_TTL_S, RunService
from flowport.settings import Settings
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
    await auth.forget(key_id)

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


async def test_a_key_revoked_on_a_replica_sharing_redis_fails_on_the_next_call(
    db: Database, redis_url: str
):
    redis = redis_url
    account_id, key_id, secret = await _key(db)
    here, there = Authenticator(db, redis_url=redis), Authenticator(db, redis_url=redis)
    await here.authenticate(secret)
    await there.authenticate(secret)

    await _revoke_elsewhere(db, account_id, key_id)
    await there.forget(key_id)

    with pytest.raises(Unauthenticated):
        await here.authenticate(secret)


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


async def _output(runs: RunService, db: Database, account_id: str, workflow_id: str) -> str:
    auth = Authenticator(db)
    async with db.session() as session:
        _, secret = await create_api_key(session, account_id=account_id, name="k", scopes=["run"])
    principal = await auth.authenticate(secret)
    run = await runs.prepare(
        principal,
        workflow_id=workflow_id,
        raw_input={"height": 2, "weight": 80},
        session_id=None,
    )
    return (await runs.run_to_end(run)).output


async def test_a_new_version_runs_next_when_published_here_and_within_a_second_elsewhere(
    db: Database, tmp_path: Path
):
    account_id, workflow_id = await _published(db, "v1 {{ calc.output }}")
    clock = Clock()
    runs = RunService(db=db, llm=None, settings=Settings(data_dir=tmp_path), clock=clock)
    assert await _output(runs, db, account_id, workflow_id) == "v1 20.0"

    # Published by another process: the cached version runs until it expires.
    await _republish(db, account_id, workflow_id, "v2 {{ calc.output }}")
    assert await _output(runs, db, account_id, workflow_id) == "v1 20.0"
    clock.now += WORKFLOW_CACHE_TTL_S
    assert await _output(runs, db, account_id, workflow_id) == "v2 20.0"

    # Published through this service (which then forgets the workflow): the next run uses it.
    await _republish(db, account_id, workflow_id, "v3 {{ calc.output }}")
    runs.forget_workflow(workflow_id)
    assert await _output(runs, db, account_id, workflow_id) == "v3 20.0"


async def test_unlimited_credits_are_trusted_a_second_and_a_limit_applies_after(
    db: Database, tmp_path: Path
):
    account_id, workflow_id = await _published(db, "{{ calc.output }}")
    clock = Clock()
    runs = RunService(db=db, llm=None, settings=Settings(data_dir=tmp_path), clock=clock)
    assert await _output(runs, db, account_id, workflow_id) == "20.0"

    async with db.session() as session:
        await set_credits(session, name="acme", credits=0)
    clock.now += UNLIMITED_CACHE_TTL_S
    with pytest.raises(CreditsExhausted):
        await _output(runs, db, account_id, workflow_id)
