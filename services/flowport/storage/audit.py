"""The audit log: each administrative change of an account, added to the session of the
change itself so that both commit together or neither does."""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from flowport.storage.models import AuditEvent

# Who changed what when the change came from the command line on the database (the CLI,
# `flowport demo`) rather than through the API with a key.
LOCAL_ACTOR = "cli"


def record_event(
    session: AsyncSession,
    *,
    account_id: str,
    actor: str,
    action: str,
    target: str,
    detail: dict[str, Any] | None = None,
) -> None:
    """Adds the event to the session; the caller's commit writes it with its change."""
    session.add(
        AuditEvent(
            account_id=account_id, key_id=actor, action=action, target=target, detail=detail or {}
        )
    )


async def audit_page(
    session: AsyncSession, *, account_id: str, limit: int, before: int | None = None
) -> tuple[list[AuditEvent], int | None]:
    """The account's events, newest first, older than event id `before` when given; and the
    `before` of the next page, None when this one is the last."""
    query = select(AuditEvent).where(AuditEvent.account_id == account_id)
    if before is not None:
        query = query.where(col(AuditEvent.id) < before)
    result = await session.exec(query.order_by(col(AuditEvent.id).desc()).limit(limit + 1))
    events = list(result.all())
    if len(events) <= limit:
        return events, None
    events = events[:limit]
    return events, events[-1].id
