"""Webhooks: an account's signing secret, and the attempts to deliver a run's end."""

from __future__ import annotations

import base64
import secrets
from datetime import timedelta

from sqlmodel import col, delete, exists, select
from sqlmodel.ext.asyncio.session import AsyncSession

from flowport.storage.audit import LOCAL_ACTOR, record_event
from flowport.storage.models import FINAL_STATUSES, Run, WebhookDelivery, WebhookSecret, utc_now

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


async def rotate_secret(
    session: AsyncSession, *, account_id: str, actor: str = LOCAL_ACTOR
) -> WebhookSecret:
    """A new secret for the account, in place of the one it had; returns it (shown once)."""
    secret = SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()
    await session.exec(delete(WebhookSecret).where(col(WebhookSecret.account_id) == account_id))
    row = WebhookSecret(account_id=account_id, secret=secret, created_at=utc_now())
    session.add(row)
    record_event(
        session,
        account_id=account_id,
        actor=actor,
        action="webhook_secret.rotated",
        target=account_id,
    )
    await session.commit()
    return row


async def signing_secret(session: AsyncSession, *, account_id: str) -> str | None:
    secret = await session.get(WebhookSecret, account_id)
    return None if secret is None else secret.secret


async def record_delivery(
    session: AsyncSession,
    *,
    run_id: str,
    attempt: int,
    status_code: int | None,
    error: str | None,
) -> None:
    session.add(
        WebhookDelivery(run_id=run_id, attempt=attempt, status_code=status_code, error=error)
    )
    await session.commit()


async def deliveries(session: AsyncSession, *, run_id: str) -> list[WebhookDelivery]:
    result = await session.exec(
        select(WebhookDelivery)
        .where(col(WebhookDelivery.run_id) == run_id)
        .order_by(col(WebhookDelivery.attempt), col(WebhookDelivery.id))
    )
    return list(result.all())


async def undelivered_runs(
    session: AsyncSession, *, ended_before_s: float, ended_within_s: float, limit: int
) -> list[str]:
    """Runs with a webhook that ended between `ended_within_s` and `ended_before_s` ago and
    have no delivery attempt on record (their first was never scheduled: the replica that
    ended them stopped first, or a reaper or a cancel ended them)."""
    now = utc_now()
    attempted = exists().where(col(WebhookDelivery.run_id) == col(Run.id))
    result = await session.exec(
        select(Run.id)
        .where(
            col(Run.webhook_url).is_not(None),
            col(Run.status).in_(FINAL_STATUSES),
            col(Run.finished_at) < now - timedelta(seconds=ended_before_s),
            col(Run.finished_at) >= now - timedelta(seconds=ended_within_s),
            ~attempted,
        )
        .order_by(col(Run.finished_at))
        .limit(limit)
    )
    return list(result.all())
