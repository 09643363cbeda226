"""Accounts: who owns keys, workflows and runs, and how many run credits they have left."""

from __future__ import annotations

from sqlalchemy import Update, bindparam, case, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from flowport.errors import NotFound
from flowport.storage.audit import LOCAL_ACTOR, record_event
from flowport.storage.models import Account


async def get_account_by_name(session: AsyncSession, *, name: str) -> Account | None:
    result = await session.exec(select(Account).where(Account.name == name))
    return result.first()


async def get_account(session: AsyncSession, *, account_id: str) -> Account:
    account = await session.get(Account, account_id)
    if account is None:
        raise NotFound(f"account {account_id} not found")
    return account


async def get_or_create_account(session: AsyncSession, *, name: str) -> Account:
    account = await get_account_by_name(session, name=name)
    if account is not None:
        return account
    account = Account(name=name)
    session.add(account)
    try:
        await session.commit()
    except IntegrityError:
        # Another process created it between our select and insert: use theirs.
        await session.rollback()
        existing = await get_account_by_name(session, name=name)
        if existing is None:
            raise
        return existing
    return account


async def set_credits(
    session: AsyncSession, *, name: str, credits: int | None, actor: str = LOCAL_ACTOR
) -> Account:
    """Gives the account (created if missing) `credits` runs; None is unlimited."""
    account = await get_or_create_account(session, name=name)
    account.credits = credits
    session.add(account)
    record_event(
        session,
        account_id=account.id,
        actor=actor,
        action="credits.set",
        target=account.id,
        detail={"credits": credits},
    )
    await session.commit()
    return account


def spend_credit_statement() -> Update:
    """The one conditional UPDATE that spends a credit of the account bound as `account_id`,
    returning the credits left (None: unlimited); no row when none was left. The database
    serialises it, so two concurrent runs can never both spend the last credit."""
    return (
        update(Account)
        .where(
            col(Account.id) == bindparam("account_id"),
            or_(col(Account.credits).is_(None), col(Account.credits) > 0),
        )
        .values(
            credits=case((col(Account.credits).is_(None), None), else_=col(Account.credits) - 1)
        )
        .returning(col(Account.credits))
    )


async def spend_credit(session: AsyncSession, *, account_id: str) -> bool:
    """Spends one run credit; False when none is left. Unlimited accounts always succeed."""
    spent, _ = await spend_credit_left(session, account_id=account_id)
    return spent


async def spend_credit_left(session: AsyncSession, *, account_id: str) -> tuple[bool, int | None]:
    """Like spend_credit, and also the balance after it: (spent, credits left; None when
    unlimited)."""
    result = await session.exec(
        # Loaded Account objects are not updated: callers read the balance afresh.
        spend_credit_statement().execution_options(synchronize_session=False),
        params={"account_id": account_id},
    )
    row = result.first()
    await session.commit()
    if row is None:
        return False, 0
    return True, row[0]


async def set_allowed_origins(
    session: AsyncSession, *, account_id: str, origins: list[str], actor: str
) -> Account:
    """Replaces the account's allowed origins, with its audit event in the same commit."""
    account = await get_account(session, account_id=account_id)
    before = list(account.allowed_origins)
    account.allowed_origins = origins
    session.add(account)
    record_event(
        session,
        account_id=account.id,
        actor=actor,
        action="cors.set",
        target=account.id,
        detail={"allowed_origins": origins, "previous": before},
    )
    await session.commit()
    return account


async def all_allowed_origins(session: AsyncSession) -> list[str]:
    """Every account's allowed origins, sorted and once each: what Envoy's CORS policy
    answers preflights for (a preflight carries no key, so no account)."""
    result = await session.exec(select(Account.allowed_origins))
    return sorted({origin for origins in result.all() for origin in origins or ()})
