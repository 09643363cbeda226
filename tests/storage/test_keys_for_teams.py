"""Keys for teams in storage: expiry, lists of workflows, rotation with a grace, and the audit
log written with every change, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text, update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from flowport.errors import InvalidArgument, NotFound
from flowport.storage import (
    Account,
    ApiKey,
    Database,
    audit_page,
    create_api_key,
    create_workflow,
    match_api_key,
    publish_workflow,
    revoke_api_key,
    rotate_api_key,
    rotate_secret,
    set_credits,
    update_workflow_draft,
)
from flowport.storage.models import utc_now


async def _workflow(session: AsyncSession, account: Account, name: str = "BMI") -> str:
    workflow = await create_workflow(
        session, account_id=account.id, name=name, visibility="private", definition={}
    )
    return workflow.id


async def test_a_key_keeps_its_expiry_and_workflows(session: AsyncSession, account: Account):
    bmi = await _workflow(session, account)
    expires = utc_now() + timedelta(days=30)

    key, secret = await create_api_key(
        session,
        account_id=account.id,
        name="team",
        scopes=["run"],
        expires_at=expires,
        workflows=[bmi, bmi],
    )

    match = await match_api_key(session, secret=secret)
    assert match is not None and match.key.id == key.id
    assert match.valid_until == expires
    assert match.key.workflows == [bmi]


@pytest.mark.parametrize(
    ("scopes", "workflows", "field"),
    [
        (["run"], ["wf_missing"], "workflows[0]"),
        (["admin", "run"], ["<bmi>"], "workflows"),
    ],
)
async def test_a_list_names_the_accounts_own_workflows_of_a_run_key(
    session: AsyncSession,
    account: Account,
    other_account: Account,
    scopes: list[str],
    workflows: list[str],
    field: str,
):
    bmi = await _workflow(session, account)
    others = await _workflow(session, other_account)
    with pytest.raises(InvalidArgument) as raised:
        await create_api_key(
            session,
            account_id=account.id,
            name="k",
            scopes=scopes,
            workflows=[bmi if w == "<bmi>" else w for w in workflows],
        )
    assert raised.value.field == field
    with pytest.raises(InvalidArgument):
        await create_api_key(
            session, account_id=account.id, name="k", scopes=["run"], workflows=[bmi, others]
        )
    # Nothing was made, and nothing recorded but the workflows.
    events, _ = await audit_page(session, account_id=account.id, limit=10)
    assert [e.action for e in events] == ["workflow.created"]


async def test_an_expiry_in_the_past_is_refused(session: AsyncSession, account: Account):
    with pytest.raises(InvalidArgument) as raised:
        await create_api_key(
            session,
            account_id=account.id,
            name="k",
            scopes=["run"],
            expires_at=utc_now() - timedelta(seconds=1),
        )
    assert raised.value.field == "expires_at"


async def test_rotation_with_a_grace_keeps_the_old_secret_until_it_ends(
    db: Database, account: Account
):
    async with db.session() as session:
        key, old = await create_api_key(session, account_id=account.id, name="k", scopes=["run"])
        rotated, new = await rotate_api_key(
            session, account_id=account.id, key_id=key.id, grace_s=3600
        )
        assert rotated.id == key.id and new != old
        assert rotated.prefix == new[:11]
        old_match = await match_api_key(session, secret=old)
        new_match = await match_api_key(session, secret=new)
    assert old_match is not None and new_match is not None
    assert old_match.key.id == new_match.key.id == key.id
    assert new_match.valid_until is None
    assert old_match.valid_until is not None
    assert timedelta(seconds=3590) < old_match.valid_until - utc_now() <= timedelta(seconds=3600)

    # The grace ends: the old secret is nobody's.
    async with db.session() as session:
        await session.exec(
            update(ApiKey)
            .where(col(ApiKey.id) == key.id)
            .values(previous_until=utc_now() - timedelta(seconds=1))
        )
        await session.commit()
        assert await match_api_key(session, secret=old) is None
        assert await match_api_key(session, secret=new) is not None


async def test_a_grace_never_outlives_the_keys_expiry(session: AsyncSession, account: Account):
    expires = utc_now() + timedelta(minutes=5)
    key, old = await create_api_key(
        session, account_id=account.id, name="k", scopes=["run"], expires_at=expires
    )
    await rotate_api_key(session, account_id=account.id, key_id=key.id, grace_s=86_400)

    match = await match_api_key(session, secret=old)
    assert match is not None and match.valid_until == expires


async def test_rotation_without_grace_drops_the_old_secret_at_once_and_only_the_last_keeps_one(
    session: AsyncSession, account: Account
):
    key, first = await create_api_key(session, account_id=account.id, name="k", scopes=["run"])
    _, second = await rotate_api_key(session, account_id=account.id, key_id=key.id, grace_s=60)
    _, third = await rotate_api_key(session, account_id=account.id, key_id=key.id, grace_s=60)
    assert await match_api_key(session, secret=first) is None
    assert await match_api_key(session, secret=second) is not None

    _, fourth = await rotate_api_key(session, account_id=account.id, key_id=key.id)

    assert await match_api_key(session, secret=second) is None
    assert await match_api_key(session, secret=third) is None
    assert await match_api_key(session, secret=fourth) is not None


async def test_rotation_refuses_bad_graces_revoked_and_foreign_keys(
    session: AsyncSession, account: Account, other_account: Account
):
    key, secret = await create_api_key(session, account_id=account.id, name="k", scopes=["run"])
    for grace in (-1, 31 * 86_400):
        with pytest.raises(InvalidArgument):
            await rotate_api_key(session, account_id=account.id, key_id=key.id, grace_s=grace)
    with pytest.raises(NotFound):
        await rotate_api_key(session, account_id=other_account.id, key_id=key.id)
    await revoke_api_key(session, account_id=account.id, key_id=key.id)
    with pytest.raises(InvalidArgument):
        await rotate_api_key(session, account_id=account.id, key_id=key.id)
    match = await match_api_key(session, secret=secret)
    assert match is not None and match.key.revoked


async def test_every_change_is_in_the_audit_log_newest_first_without_secrets(
    db: Database, account: Account, other_account: Account
):
    async with db.session() as session:
        bmi = await _workflow(session, account)
        await update_workflow_draft(
            session,
            account_id=account.id,
            workflow_id=bmi,
            name="BMI 2",
            visibility="public",
            definition={},
            actor="key_admin",
        )
        await publish_workflow(session, account_id=account.id, workflow_id=bmi, actor="key_admin")
        key, first = await create_api_key(
            session,
            account_id=account.id,
            name="team",
            scopes=["run"],
            workflows=[bmi],
            actor="key_admin",
        )
        _, second = await rotate_api_key(
            session, account_id=account.id, key_id=key.id, grace_s=60, actor="key_admin"
        )
        await revoke_api_key(session, account_id=account.id, key_id=key.id, actor="key_admin")
        # Revoking again changes nothing, and records nothing.
        await revoke_api_key(session, account_id=account.id, key_id=key.id, actor="key_admin")
        webhook = await rotate_secret(session, account_id=account.id, actor="key_admin")
        await set_credits(session, name=account.name, credits=5)
        await set_credits(session, name=other_account.name, credits=1)

        events, after = await audit_page(session, account_id=account.id, limit=100)

    assert after is None
    assert [(e.action, e.target, e.key_id) for e in events] == [
        ("credits.set", account.id, "cli"),
        ("webhook_secret.rotated", account.id, "key_admin"),
        ("key.revoked", key.id, "key_admin"),
        ("key.rotated", key.id, "key_admin"),
        ("key.created", key.id, "key_admin"),
        ("workflow.published", bmi, "key_admin"),
        ("workflow.saved", bmi, "key_admin"),
        ("workflow.created", bmi, "cli"),
    ]
    assert events[0].detail == {"credits": 5}
    assert events[3].detail == {"prefix": second[:11], "grace_s": 60}
    assert events[4].detail["workflows"] == [bmi]
    assert events[5].detail == {"version": 1}
    assert all(e.at.tzinfo is not None for e in events)
    # No secret anywhere in the table, whoever reads it.
    async with db.engine.connect() as connection:
        stored = " ".join(
            str(value)
            for row in (await connection.execute(text("SELECT * FROM audit_events"))).all()
            for value in row
        )
    for secret in (first, second, webhook.secret):
        assert secret not in stored
        assert secret[11:] not in stored


async def test_audit_pages_walk_back_without_overlap(session: AsyncSession, account: Account):
    for index in range(5):
        await set_credits(session, name=account.name, credits=index)

    first, before = await audit_page(session, account_id=account.id, limit=2)
    second, before2 = await audit_page(session, account_id=account.id, limit=2, before=before)
    third, end = await audit_page(session, account_id=account.id, limit=2, before=before2)

    credits = [e.detail["credits"] for e in first + second + third]
    assert credits == [4, 3, 2, 1, 0]
    assert end is None


async def test_a_change_that_fails_records_nothing(session: AsyncSession, account: Account):
    with pytest.raises(NotFound):
        await publish_workflow(session, account_id=account.id, workflow_id="wf_missing")
    with pytest.raises(NotFound):
        await revoke_api_key(session, account_id=account.id, key_id="key_missing")
    with pytest.raises(InvalidArgument):
        await create_workflow(
            session, account_id=account.id, name="x", visibility="secret", definition={}
        )

    assert await audit_page(session, account_id=account.id, limit=10) == ([], None)
