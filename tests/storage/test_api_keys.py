"""API keys: shown once, stored as a digest, found by their plaintext only."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from flowport.errors import NotFound
from flowport.storage import (
    Account,
    Database,
    create_api_key,
    find_api_key,
    list_api_keys,
    revoke_api_key,
    touch_api_key,
)


async def test_key_has_the_documented_shape(session: AsyncSession, account: Account):
    key, secret = await create_api_key(
        session, account_id=account.id, name="ci", scopes=["run", "admin"]
    )
    assert secret.startswith("fp_")
    assert len(secret) == 35
    assert secret[3:].isalnum()
    assert key.prefix == secret[:11]
    assert key.scopes == ["run", "admin"]
    assert not key.revoked


async def test_plaintext_is_stored_nowhere_in_the_row(db: Database, account: Account):
    async with db.session() as session:
        _, secret = await create_api_key(session, account_id=account.id, name="ci", scopes=["run"])
    async with db.engine.connect() as connection:
        rows = (await connection.execute(text("SELECT * FROM api_keys"))).all()
    stored = " ".join(str(value) for row in rows for value in row)
    assert secret not in stored
    # Everything after the visible prefix is secret.
    assert secret[11:] not in stored
    assert secret[11:19] not in stored


async def test_find_returns_the_right_key_and_nothing_for_a_near_miss(
    db: Database, account: Account
):
    async with db.session() as session:
        first, first_secret = await create_api_key(
            session, account_id=account.id, name="a", scopes=["run"]
        )
        second, second_secret = await create_api_key(
            session, account_id=account.id, name="b", scopes=["run"]
        )
    last = first_secret[-1]
    one_changed = first_secret[:-1] + ("A" if last != "A" else "B")

    async with db.session() as session:
        found = await find_api_key(session, secret=first_secret)
        assert found is not None and found.id == first.id
        found = await find_api_key(session, secret=second_secret)
        assert found is not None and found.id == second.id
        assert await find_api_key(session, secret=one_changed) is None
        assert await find_api_key(session, secret=first_secret + "x") is None
        assert await find_api_key(session, secret="fp_" + "a" * 32) is None
        assert await find_api_key(session, secret="not a key") is None
        assert await find_api_key(session, secret="") is None


async def test_list_is_newest_first_and_revoke_is_visible(session: AsyncSession, account: Account):
    older, _ = await create_api_key(session, account_id=account.id, name="old", scopes=["run"])
    newer, secret = await create_api_key(session, account_id=account.id, name="new", scopes=[])
    revoked = await revoke_api_key(session, account_id=account.id, key_id=newer.id)
    assert revoked.revoked
    revoked_at = revoked.revoked_at

    again = await revoke_api_key(session, account_id=account.id, key_id=newer.id)
    assert again.revoked_at == revoked_at

    keys = await list_api_keys(session, account_id=account.id)
    assert [key.id for key in keys] == [newer.id, older.id]
    assert [key.revoked for key in keys] == [True, False]
    # find still returns a revoked key: refusing it is the caller's decision.
    found = await find_api_key(session, secret=secret)
    assert found is not None and found.revoked


async def test_revoking_another_accounts_key_is_not_found(
    session: AsyncSession, account: Account, other_account: Account
):
    key, secret = await create_api_key(session, account_id=account.id, name="a", scopes=["run"])
    with pytest.raises(NotFound):
        await revoke_api_key(session, account_id=other_account.id, key_id=key.id)
    with pytest.raises(NotFound):
        await revoke_api_key(session, account_id=account.id, key_id="key_missing")
    found = await find_api_key(session, secret=secret)
    assert found is not None and not found.revoked
    assert await list_api_keys(session, account_id=other_account.id) == []


async def test_creating_a_key_for_a_missing_account_is_not_found(session: AsyncSession):
    with pytest.raises(NotFound):
        await create_api_key(session, account_id="acct_missing", name="a", scopes=["run"])


async def test_touch_records_last_use(db: Database, account: Account):
    async with db.session() as session:
        key, secret = await create_api_key(session, account_id=account.id, name="a", scopes=[])
        assert key.last_used_at is None
        await touch_api_key(session, key_id=key.id)
    async with db.session() as session:
        found = await find_api_key(session, secret=secret)
    assert found is not None and found.last_used_at is not None
    assert found.last_used_at >= found.created_at
