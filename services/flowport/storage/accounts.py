"""Accounts: who owns keys, workflows and runs, and how many run credits they have left."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from flowport.errors import NotFound
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
