"""Conversation memory: the turns of a session, per account, forgotten after a quiet spell."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from sqlalchemy import bindparam
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import Select, SelectOfScalar

from flowport.storage.models import SessionTurn, utc_now

# docs/api.md: a node sees at most 50 turns, so no more are ever read.
MAX_TURNS = 50


class _Dated(Protocol):
    @property
    def created_at(self) -> datetime: ...


Turn = TypeVar("Turn", bound=_Dated)
Q = TypeVar("Q", Select[str, str, datetime], SelectOfScalar[SessionTurn])


async def recent_turns(
    session: AsyncSession, *, account_id: str, session_id: str, ttl_s: float
) -> list[SessionTurn]:
    """The session's last turns, oldest first; none if its newest turn is older than `ttl_s`
    (the memory expired) or the session belongs to another account."""
    result = await session.exec(
        _newest_first(select(SessionTurn)),
        params={"account_id": account_id, "session_id": session_id},
    )
    return live_turns(list(result.all()), ttl_s)


def recent_turns_statement() -> Select[str, str, datetime]:
    """recent_turns' query for code that runs it itself (the SQLite run writer): the user
    and assistant text and time of the session bound as `account_id`, `session_id`."""
    return _newest_first(
        select(col(SessionTurn.user), col(SessionTurn.assistant), col(SessionTurn.created_at))
    )


def _newest_first(query: Q) -> Q:
    """`query` narrowed to the last turns of the session bound as `account_id`,
    `session_id`, newest first."""
    return (
        query.where(
            col(SessionTurn.account_id) == bindparam("account_id"),
            col(SessionTurn.session_id) == bindparam("session_id"),
        )
        .order_by(col(SessionTurn.id).desc())
        .limit(MAX_TURNS)
    )


def live_turns(newest_first: Sequence[Turn], ttl_s: float) -> list[Turn]:
    """The turns oldest first, or none if the newest is older than `ttl_s`."""
    if not newest_first or newest_first[0].created_at < utc_now() - timedelta(seconds=ttl_s):
        return []
    return list(newest_first[::-1])
