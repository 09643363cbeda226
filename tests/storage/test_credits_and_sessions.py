"""Run credits spent atomically, and session memory per account with expiry."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from flowport.storage import (
    Account,
    Database,
    RunWriter,
    SessionTurn,
    create_run,
    create_workflow,
    get_account,
    recent_turns,
    set_credits,
    spend_credit,
    spend_credit_left,
)


async def test_accounts_are_unlimited_until_credits_are_set(db: Database, account: Account):
    async with db.session() as session:
        assert all([await spend_credit(session, account_id=account.id) for _ in range(5)])
        await set_credits(session, name=account.name, credits=2)
        spent = [await spend_credit(session, account_id=account.id) for _ in range(3)]

    assert spent == [True, True, False]
    async with db.session() as session:
        assert (await get_account(session, account_id=account.id)).credits == 0


async def test_concurrent_runs_never_both_spend_the_last_credit(db: Database, account: Account):
    async with db.session() as session:
        await set_credits(session, name=account.name, credits=1)

    async def spend() -> bool:
        async with db.session() as session:
            return await spend_credit(session, account_id=account.id)

    results = await asyncio.gather(*(spend() for _ in range(10)))

    assert sorted(results) == [False] * 9 + [True]


async def _turn(db: Database, account: Account, run_id: str, user: str, assistant: str) -> None:
    """A run in session "s1" whose finish adds the turn, as the service writes it."""
    async with db.session() as session:
        workflow = await create_workflow(
            session, account_id=account.id, name="chat", visibility="private", definition={}
        )
        await create_run(
            session,
            run_id=run_id,
            account_id=account.id,
            key_id=None,
            workflow_id=workflow.id,
            version=1,
            inputs={},
            session_id="s1",
        )
    await RunWriter(db).finish(
        run_id=run_id,
        status="succeeded",
        output=assistant,
        error=None,
        error_node=None,
        total_time=0.01,
        node_runs=[],
        turn=(account.id, "s1", user, assistant),
    )


async def test_turns_come_back_oldest_first_per_account(
    db: Database, session: AsyncSession, account: Account, other_account: Account
):
    for number in range(3):
        await _turn(db, account, f"run_{number}", f"q{number}", f"a{number}")

    turns = await recent_turns(session, account_id=account.id, session_id="s1", ttl_s=60)

    assert [(t.user, t.assistant) for t in turns] == [("q0", "a0"), ("q1", "a1"), ("q2", "a2")]
    # The same session id in another account is another conversation.
    assert await recent_turns(session, account_id=other_account.id, session_id="s1", ttl_s=60) == []


async def test_a_quiet_session_forgets(db: Database, session: AsyncSession, account: Account):
    await _turn(db, account, "run_old", "q", "a")
    turn = (await recent_turns(session, account_id=account.id, session_id="s1", ttl_s=60))[0]
    turn.created_at -= timedelta(minutes=31)
    session.add(turn)
    await session.commit()

    assert await recent_turns(session, account_id=account.id, session_id="s1", ttl_s=1800) == []
    assert isinstance(turn, SessionTurn)


async def test_spending_tells_the_balance_left(db: Database, account: Account):
    async with db.session() as session:
        assert await spend_credit_left(session, account_id=account.id) == (True, None)
        await set_credits(session, name=account.name, credits=1)
        assert await spend_credit_left(session, account_id=account.id) == (True, 0)
        assert await spend_credit_left(session, account_id=account.id) == (False, 0)
