"""API keys: only a sha256 digest and a short visible prefix are stored, never the key."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from flowport.errors import InvalidArgument, NotFound
from flowport.ids import random_token
from flowport.storage.accounts import get_account
from flowport.storage.audit import LOCAL_ACTOR, record_event
from flowport.storage.models import ApiKey, Workflow, utc_now

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


# The longest a rotated-out secret may go on working.
MAX_GRACE_S = 30 * 86_400
# How many workflows one key's list may name.
MAX_KEY_WORKFLOWS = 100


@dataclass(frozen=True, slots=True)
class KeyMatch:
    """The key a secret belongs to, and until when that secret works (None: no end)."""

    key: ApiKey
    valid_until: datetime | None


async def create_api_key(
    session: AsyncSession,
    *,
    account_id: str,
    name: str,
    scopes: list[str],
    expires_at: datetime | None = None,
    workflows: list[str] | None = None,
    actor: str = LOCAL_ACTOR,
) -> tuple[ApiKey, str]:
    """The new key and its plaintext, which is returned only here. `workflows`: the ids of
    the account's workflows it may run (None or empty: all of them); `actor`: the key (or
    the CLI) that made it, for the audit log."""
    await get_account(session, account_id=account_id)
    if expires_at is not None and expires_at <= utc_now():
        raise InvalidArgument.at("expires_at", "already past")
    allowed = await _checked_workflows(session, account_id, scopes, workflows)
    secret = KEY_PREFIX + random_token(_SECRET_LENGTH)
    key = ApiKey(
        account_id=account_id,
        name=name,
        prefix=secret[:_VISIBLE_LENGTH],
        key_hash=_digest(secret),
        scopes=list(scopes),
        expires_at=expires_at,
        workflows=allowed,
    )
    session.add(key)
    record_event(
        session,
        account_id=account_id,
        actor=actor,
        action="key.created",
        target=key.id,
        detail={
            "name": name,
            "prefix": key.prefix,
            "scopes": list(scopes),
            "expires_at": None if expires_at is None else expires_at.isoformat(),
            "workflows": allowed,
        },
    )
    await session.commit()
    return key, secret


async def _checked_workflows(
    session: AsyncSession, account_id: str, scopes: list[str], workflows: list[str] | None
) -> list[str] | None:
    """A key's list of workflows, each one of the account's own; None for every workflow."""
    allowed = list(dict.fromkeys(workflows or ()))
    if not allowed:
        return None
    if "admin" in scopes:
        # An admin key could make itself an unlimited key: a list would promise nothing.
        raise InvalidArgument.at("workflows", "only keys without the admin scope have a list")
    if len(allowed) > MAX_KEY_WORKFLOWS:
        raise InvalidArgument.at("workflows", f"more than {MAX_KEY_WORKFLOWS}")
    result = await session.exec(
        select(Workflow.id).where(Workflow.account_id == account_id, col(Workflow.id).in_(allowed))
    )
    known = set(result.all())
    for index, workflow_id in enumerate(allowed):
        if workflow_id not in known:
            raise InvalidArgument.at(
                f"workflows[{index}]", f"no workflow {workflow_id} in this account"
            )
    return allowed


async def rotate_api_key(
    session: AsyncSession,
    *,
    account_id: str,
    key_id: str,
    grace_s: int = 0,
    actor: str = LOCAL_ACTOR,
) -> tuple[ApiKey, str]:
    """A new secret for the key, returned only here; the one it had works `grace_s` more
    seconds (0: not at all). A secret rotated out before stops at once: only the newest
    rotated-out secret keeps a grace."""
    if not 0 <= grace_s <= MAX_GRACE_S:
        raise InvalidArgument.at("grace_s", f"must be between 0 and {MAX_GRACE_S}")
    key = await _account_key(session, account_id=account_id, key_id=key_id)
    if key.revoked:
        raise InvalidArgument.at("id", f"key {key_id} is revoked")
    secret = KEY_PREFIX + random_token(_SECRET_LENGTH)
    if grace_s > 0:
        key.previous_prefix, key.previous_hash = key.prefix, key.key_hash
        key.previous_until = utc_now() + timedelta(seconds=grace_s)
    else:
        key.previous_prefix = key.previous_hash = key.previous_until = None
    key.prefix, key.key_hash = secret[:_VISIBLE_LENGTH], _digest(secret)
    session.add(key)
    record_event(
        session,
        account_id=account_id,
        actor=actor,
        action="key.rotated",
        target=key.id,
        detail={"prefix": key.prefix, "grace_s": grace_s},
    )
    await session.commit()
    return key, secret


async def list_api_keys(session: AsyncSession, *, account_id: str) -> list[ApiKey]:
    result = await session.exec(
        select(ApiKey)
        .where(ApiKey.account_id == account_id)
        .order_by(col(ApiKey.created_at).desc(), col(ApiKey.id))
    )
    return list(result.all())


async def _account_key(session: AsyncSession, *, account_id: str, key_id: str) -> ApiKey:
    result = await session.exec(
        select(ApiKey).where(ApiKey.id == key_id, ApiKey.account_id == account_id)
    )
    key = result.first()
    if key is None:
        raise NotFound(f"key {key_id} not found")
    return key


async def revoke_api_key(
    session: AsyncSession, *, account_id: str, key_id: str, actor: str = LOCAL_ACTOR
) -> ApiKey:
    """Revokes the key; revoking it again keeps the first revocation time (and records
    nothing: nothing changed)."""
    key = await _account_key(session, account_id=account_id, key_id=key_id)
    if key.revoked_at is None:
        key.revoked_at = utc_now()
        session.add(key)
        record_event(
            session, account_id=account_id, actor=actor, action="key.revoked", target=key.id
        )
        await session.commit()
    return key


async def find_api_key(session: AsyncSession, *, secret: str) -> ApiKey | None:
    """The key with this plaintext, revoked or expired or not (the caller decides), or None.
    A secret rotated out is the key's until its grace ends."""
    match = await match_api_key(session, secret=secret)
    return None if match is None else match.key


async def match_api_key(session: AsyncSession, *, secret: str) -> KeyMatch | None:
    """The key with this plaintext (its current secret, or the one a rotation replaced,
    within its grace) and until when the secret works; None for any other text. Every
    candidate's digests are compared in constant time, and an unknown key costs one
    comparison too."""
    candidates: list[ApiKey] = []
    if _well_formed(secret):
        visible = secret[:_VISIBLE_LENGTH]
        result = await session.exec(
            select(ApiKey).where(
                or_(col(ApiKey.prefix) == visible, col(ApiKey.previous_prefix) == visible)
            )
        )
        candidates = list(result.all())
    digest = _digest(secret)
    now = utc_now()
    found = None
    for candidate in candidates:
        if hmac.compare_digest(candidate.key_hash, digest):
            found = KeyMatch(candidate, candidate.expires_at)
        previous = candidate.previous_hash or _DUMMY_DIGEST
        until = candidate.previous_until
        if hmac.compare_digest(previous, digest) and until is not None and until > now:
            expires = candidate.expires_at
            found = KeyMatch(candidate, until if expires is None else min(until, expires))
    if not candidates:
        hmac.compare_digest(_DUMMY_DIGEST, digest)
    return found


async def touch_api_key(session: AsyncSession, *, key_id: str) -> None:
    """Records that the key was just used."""
    await session.exec(
        update(ApiKey).where(col(ApiKey.id) == key_id).values(last_used_at=utc_now())
    )
    await session.commit()
