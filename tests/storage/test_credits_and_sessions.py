"""Run credits spent atomically, and session memory per account with expiry."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from flowport.errors import NotFound
from flowport.ids import new_id
from flowport.storage import (
    Account,
    Database,
    NewRun,
    Recorder,
    SessionTurn,
    create_run,
    create_workflow,
    get_account,
    get_run,
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
            NewRun(
                run_id=run_id,
                account_id=account.id,
                key_id=None,
                workflow_id=workflow.id,
                version=1,
                inputs={},
                session_id="s1",
            ),
        )
    await Recorder(db).finish(
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


async def _workflow_id(db: Database, account: Account) -> str:
    async with db.session() as session:
        workflow = await create_workflow(
            session, account_id=account.id, name="chat", visibility="private", definition={}
        )
    return workflow.id


def _new_run(account: Account, workflow_id: str) -> NewRun:
    return NewRun(
        run_id=new_id("run", 20),
        account_id=account.id,
        key_id=None,
        workflow_id=workflow_id,
        version=1,
        inputs={"q": "?"},
        session_id="s1",
    )


async def _status(db: Database, account: Account, run_id: str) -> str | None:
    async with db.session() as session:
        try:
            run, _ = await get_run(session, account_id=account.id, run_id=run_id)
        except NotFound:
            return None
    return run.status


@pytest.mark.parametrize(
    ("credits", "spent", "left", "status"), [(2, True, 1, "running"), (0, False, None, None)]
)
async def test_beginning_a_run_spends_a_credit_and_writes_its_row_only_if_one_is_left(
    db: Database, account: Account, credits: int, spent: bool, left: int | None, status: str | None
):
    async with db.session() as session:
        await set_credits(session, name=account.name, credits=credits)
    writer = Recorder(db)
    run = _new_run(account, await _workflow_id(db, account))

    begun = await writer.begin(run, spend=True, memory_ttl_s=None)

    assert (begun.spent, begun.credits_left, begun.turns) == (spent, left, [])
    assert await _status(db, account, run.run_id) == status
    async with db.session() as session:
        assert (await get_account(session, account_id=account.id)).credits == max(credits - 1, 0)
    await writer.close()


async def test_an_unlimited_account_spends_nothing_and_says_so(db: Database, account: Account):
    writer = Recorder(db)
    begun = await writer.begin(
        _new_run(account, await _workflow_id(db, account)), spend=True, memory_ttl_s=None
    )
    assert (begun.spent, begun.credits_left) == (True, None)
    await writer.close()


async def test_runs_beginning_at_once_never_both_spend_the_last_credit(
    db: Database, account: Account
):
    async with db.session() as session:
        await set_credits(session, name=account.name, credits=3)
    writer = Recorder(db)
    workflow_id = await _workflow_id(db, account)
    runs = [_new_run(account, workflow_id) for _ in range(10)]

    begun = await asyncio.gather(*(writer.begin(r, spend=True, memory_ttl_s=None) for r in runs))

    assert sorted(b.spent for b in begun) == [False] * 7 + [True] * 3
    written = [await _status(db, account, r.run_id) for r in runs]
    assert [status is not None for status in written] == [b.spent for b in begun]
    await writer.close()


async def test_beginning_a_run_reads_its_sessions_turns_until_they_expire(
    db: Database, account: Account
):
    for number in range(2):
        await _turn(db, account, f"run_{number}", f"q{number}", f"a{number}")
    writer = Recorder(db)
    workflow_id = await _workflow_id(db, account)

    fresh = await writer.begin(_new_run(account, workflow_id), spend=False, memory_ttl_s=60)
    # A session quiet for longer than the time to live is forgotten.
    await asyncio.sleep(0.01)
    quiet = await writer.begin(_new_run(account, workflow_id), spend=False, memory_ttl_s=0.005)

    assert fresh.turns == [("q0", "a0"), ("q1", "a1")]
    assert quiet.turns == []
    await writer.close()
