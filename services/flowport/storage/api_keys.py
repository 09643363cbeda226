"""API keys: only a sha256 digest and a short visible prefix are stored, never the key."""

from __future__ import annotations

import hashlib
import hmac

from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from flowport.errors import NotFound
from flowport.ids import random_token
from flowport.storage.accounts import get_account
from flowport.storage.models import ApiKey, utc_now

KEY_PREFIX = "fp_"
_SECRET_LENGTH = 32
# `fp_` and 8 characters: enough to tell keys apart in a listing, far too few to guess the rest.
_VISIBLE_LENGTH = len(KEY_PREFIX) + 8
# Compared against when no stored key matches, so an unknown key costs what a known one does.
_DUMMY_DIGEST = hashlib.sha256(b"flowport-no-such-key").hexdigest()


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _well_formed(secret: str) -> bool:
    body = secret[len(KEY_PREFIX) :]
    return (
        secret.startswith(KEY_PREFIX)
        and len(body) >= _SECRET_LENGTH
        and body.isascii()
        and body.isalnum()
    )


async def create_api_key(
    session: AsyncSession, *, account_id: str, name: str, scopes: list[str]
) -> tuple[ApiKey, str]:
    """The new key and its plaintext, which is returned only here."""
    await get_account(session, account_id=account_id)
    secret = KEY_PREFIX + random_token(_SECRET_LENGTH)
    key = ApiKey(
        account_id=account_id,
        name=name,
        prefix=secret[:_VISIBLE_LENGTH],
        key_hash=_digest(secret),
        scopes=list(scopes),
    )
    session.add(key)
    await session.commit()
    return key, secret


async def list_api_keys(session: AsyncSession, *, account_id: str) -> list[ApiKey]:
    result = await session.exec(
        select(ApiKey)
        .where(ApiKey.account_id == account_id)
        .order_by(col(ApiKey.created_at).desc(), col(ApiKey.id))
    )
    return list(result.all())


async def revoke_api_key(session: AsyncSession, *, account_id: str, key_id: str) -> ApiKey:
    """Revokes the key; revoking it again keeps the first revocation time."""
    result = await session.exec(
        select(ApiKey).where(ApiKey.id == key_id, ApiKey.account_id == account_id)
    )
    key = result.first()
    if key is None:
        raise NotFound(f"key {key_id} not found")
    if key.revoked_at is None:
        key.revoked_at = utc_now()
        session.add(key)
        await session.commit()
    return key


async def find_api_key(session: AsyncSession, *, secret: str) -> ApiKey | None:
    """The key with this plaintext, revoked or not (the caller decides), or None."""
    candidates: list[ApiKey] = []
    if _well_formed(secret):
        result = await session.exec(select(ApiKey).where(ApiKey.prefix == secret[:_VISIBLE_LENGTH]))
        candidates = list(result.all())
    digest = _digest(secret)
    found = None
    for candidate in candidates:
        if hmac.compare_digest(candidate.key_hash, digest):
            found = candidate
    if not candidates:
        hmac.compare_digest(_DUMMY_DIGEST, digest)
    return found


async def touch_api_key(session: AsyncSession, *, key_id: str) -> None:
    """Records that the key was just used."""
    await session.exec(
        update(ApiKey).where(col(ApiKey.id) == key_id).values(last_used_at=utc_now())
    )
    await session.commit()
