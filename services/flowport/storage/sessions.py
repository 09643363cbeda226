"""Conversation memory: the turns of a session, per account, forgotten after a quiet spell."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from flowport.storage.models import SessionTurn, utc_now

# API.md: a node sees at most 50 turns, so no more are ever read.
MAX_TURNS = 50


async def recent_turns(
    session: AsyncSession, *, account_id: str, session_id: str, ttl_s: float
) -> list[SessionTurn]:
    """The session's last turns, oldest first; none if its newest turn is older than `ttl_s`
    (the memory expired) or the session belongs to another account."""
    result = await session.exec(
        select(SessionTurn)
        .where(SessionTurn.account_id == account_id, SessionTurn.session_id == session_id)
        .order_by(col(SessionTurn.id).desc())
        .limit(MAX_TURNS)
    )
    turns = list(result.all())
    if not turns or turns[0].created_at < utc_now() - timedelta(seconds=ttl_s):
        return []
    return turns[::-1]
