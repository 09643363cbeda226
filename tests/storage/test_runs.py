"""Runs: created when a call starts, finished by the recorder with every node's record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from flowport.engine import NodeFinished
from flowport.errors import NotFound
from flowport.ids import new_id
from flowport.storage import (
    Account,
    Database,
    NewRun,
    Recorder,
    Workflow,
    create_run,
    create_workflow,
    get_run,
    publish_workflow,
)


@pytest.fixture
async def workflow(session: AsyncSession, account: Account) -> Workflow:
    workflow = await create_workflow(
        session, account_id=account.id, name="BMI", visibility="private", definition={}
    )
    await publish_workflow(session, account_id=account.id, workflow_id=workflow.id)
    return workflow


async def start(session: AsyncSession, account: Account, workflow: Workflow) -> str:
    run = await create_run(
        session,
        NewRun(
            run_id=new_id("run", 20),
            account_id=account.id,
            key_id=None,
            workflow_id=workflow.id,
            version=1,
            inputs={"height": 1.8, "weight": 70},
            session_id="s1",
        ),
    )
    assert run.status == "running"
    return run.id


async def test_a_finished_run_stores_the_outcome_and_every_node(
    db: Database, account: Account, workflow: Workflow
):
    began = datetime.now(UTC)
    records = [
        NodeFinished(
            node_id=node_id,
            type=node_type,
            name=node_id,
            status="succeeded",
            started_at=began + timedelta(milliseconds=offset),
            time_spend=0.01,
            inputs={"weight": 70} if node_type == "template" else None,
            output={"output": "21.6"},
            error=None,
        )
        # Given out of order: get_run orders nodes by when they started.
        for node_id, node_type, offset in [
            ("calc", "template", 1),
            ("start", "in", 0),
            ("end", "out", 2),
        ]
    ]
    async with db.session() as session:
        run_id = await start(session, account, workflow)
    await Recorder(db).finish(
        run_id=run_id,
        status="succeeded",
        output="您的BMI值是21.6",
        error=None,
        error_node=None,
        total_time=0.05,
        node_runs=records,
    )

    async with db.session() as session:
        run, nodes = await get_run(session, account_id=account.id, run_id=run_id)
    assert (run.status, run.output, run.total_time) == ("succeeded", "您的BMI值是21.6", 0.05)
    assert run.inputs == {"height": 1.8, "weight": 70}
    assert run.finished_at is not None and run.finished_at >= run.started_at
    assert run.started_at.tzinfo is not None
    assert [node.node_id for node in nodes] == ["start", "calc", "end"]
    assert nodes[1].inputs == {"weight": 70}
    assert nodes[1].output == {"output": "21.6"}
    assert nodes[0].started_at == began


async def test_failed_run_keeps_the_error_and_node(
    db: Database, account: Account, workflow: Workflow
):
    async with db.session() as session:
        run_id = await start(session, account, workflow)
    await Recorder(db).finish(
        run_id=run_id,
        status="failed",
        output=None,
        error="division by zero",
        error_node="calc",
        total_time=0.01,
        node_runs=[],
    )
    async with db.session() as session:
        run, nodes = await get_run(session, account_id=account.id, run_id=run_id)
    assert (run.status, run.error, run.error_node, nodes) == (
        "failed",
        "division by zero",
        "calc",
        [],
    )


async def test_another_accounts_run_is_not_found(
    session: AsyncSession, account: Account, other_account: Account, workflow: Workflow
):
    run_id = await start(session, account, workflow)
    with pytest.raises(NotFound):
        await get_run(session, account_id=other_account.id, run_id=run_id)
