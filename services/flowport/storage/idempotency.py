"""Idempotency keys: the first call with a key names the run; the same key again within the
window is that run."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from flowport.storage.models import IdempotencyKey, utc_now


async def claim_key(
    session: AsyncSession,
    *,
    account_id: str,
    key: str,
    fingerprint: str,
    run_id: str,
    window_s: float,
) -> IdempotencyKey | None:
    """Takes the key for `run_id`: None if this call is its first within the window (a key
    older than the window is taken afresh), else the call that had it. The database's
    unique index settles two calls at once."""
    cutoff = utc_now() - timedelta(seconds=window_s)
    await session.exec(
        delete(IdempotencyKey).where(
            col(IdempotencyKey.account_id) == account_id,
            col(IdempotencyKey.key) == key,
            col(IdempotencyKey.created_at) < cutoff,
        )
    )
    session.add(
        IdempotencyKey(account_id=account_id, key=key, fingerprint=fingerprint, run_id=run_id)
    )
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        result = await session.exec(
            select(IdempotencyKey).where(
                col(IdempotencyKey.account_id) == account_id, col(IdempotencyKey.key) == key
            )
        )
        return result.first()
    return None


async def release_key(session: AsyncSession, *, account_id: str, key: str, run_id: str) -> None:
    """The key's first call was refused before its run began: the key is free again."""
    await session.exec(
        delete(IdempotencyKey).where(
            col(IdempotencyKey.account_id) == account_id,
            col(IdempotencyKey.key) == key,
            col(IdempotencyKey.run_id) == run_id,
        )
    )
    await session.commit()


async def expire_keys(session: AsyncSession, *, before: datetime) -> int:
    result = await session.exec(
        delete(IdempotencyKey).where(col(IdempotencyKey.created_at) < before)
    )
    await session.commit()
    return int(result.rowcount)


async def key_run(session: AsyncSession, *, account_id: str, key: str) -> str | None:
    """The run the key names now; None once it was released."""
    result = await session.exec(
        select(IdempotencyKey.run_id).where(
            col(IdempotencyKey.account_id) == account_id, col(IdempotencyKey.key) == key
        )
    )
    return result.first()
