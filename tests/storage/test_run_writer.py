"""The batching run writer: starts, ends with their nodes and session turns, on both databases."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from flowport.errors import InvalidArgument, NotFound
from flowport.ids import new_id
from flowport.storage import (
    Account,
    Database,
    NewRun,
    NodeRun,
    NodeRunRecord,
    Run,
    RunWriter,
    Workflow,
    create_workflow,
    get_run,
    publish_workflow,
    recent_turns,
)
from flowport.storage.sqlite_writes import CHECKPOINT_EVERY, _TakeTurns, _WriterThread

from .conftest import SQLITE_ONLY


@pytest.fixture
async def workflow(session: AsyncSession, account: Account) -> Workflow:
    workflow = await create_workflow(
        session, account_id=account.id, name="BMI", visibility="private", definition={}
    )
    await publish_workflow(session, account_id=account.id, workflow_id=workflow.id)
    return workflow


def _node(node_id: str) -> NodeRunRecord:
    return NodeRunRecord(
        node_id=node_id,
        node_type="template",
        name=node_id,
        status="succeeded",
        started_at=datetime.now(UTC),
        time_spend=0.001,
        inputs={"x": 1},
        output={"output": node_id},
        error=None,
    )


def _start_as(
    writer: RunWriter, account: Account, workflow: Workflow, run_id: str, delay_s: float = 0.0
):
    return writer.start(_new_run(account, workflow, run_id), delay_s=delay_s)


def _new_run(account: Account, workflow: Workflow, run_id: str) -> NewRun:
    return NewRun(
        run_id=run_id,
        account_id=account.id,
        key_id=None,
        workflow_id=workflow.id,
        version=1,
        inputs={"height": 1.8},
        session_id="s1",
    )


async def _start(writer: RunWriter, account: Account, workflow: Workflow) -> str:
    """A new run's row, committed; its id."""
    run_id = new_id("run", 20)
    await _start_as(writer, account, workflow, run_id)
    return run_id


async def _row(db: Database, account: Account, run_id: str) -> tuple[Run, list[NodeRun]]:
    """The run's record and its nodes, as read back."""
    async with db.session() as session:
        return await get_run(session, account_id=account.id, run_id=run_id)


async def _finish(writer: RunWriter, run_id: str, nodes: list[NodeRunRecord]) -> None:
    await writer.finish(
        run_id=run_id,
        status="succeeded",
        output="ok",
        error=None,
        error_node=None,
        total_time=0.01,
        node_runs=nodes,
    )


async def test_a_started_run_is_running_and_a_finished_one_has_its_nodes(
    db: Database, account: Account, workflow: Workflow
):
    writer = RunWriter(db)
    run_id = await _start(writer, account, workflow)
    run, nodes = await _row(db, account, run_id)
    assert (run.status, run.inputs, run.session_id, nodes) == ("running", {"height": 1.8}, "s1", [])

    await _finish(writer, run_id, [_node("a"), _node("b")])
    run, nodes = await _row(db, account, run_id)
    assert (run.status, run.output, run.finished_at is not None) == ("succeeded", "ok", True)
    assert [(n.node_id, n.inputs, n.output) for n in nodes] == [
        ("a", {"x": 1}, {"output": "a"}),
        ("b", {"x": 1}, {"output": "b"}),
    ]


async def test_a_run_started_and_ended_at_once_is_one_finished_row(
    db: Database, account: Account, workflow: Workflow
):
    writer = RunWriter(db)
    run_ids = [new_id("run", 20) for _ in range(3)]
    # Started and ended before the writer runs: each start and end share one batch.
    for run_id in run_ids:
        _start_as(writer, account, workflow, run_id)
    await asyncio.gather(*(_finish(writer, run_id, [_node("a")]) for run_id in run_ids))
    async with db.session() as session:
        for run_id in run_ids:
            run, nodes = await get_run(session, account_id=account.id, run_id=run_id)
            assert (run.status, run.output, run.inputs, run.session_id) == (
                "succeeded",
                "ok",
                {"height": 1.8},
                "s1",
            )
            assert run.finished_at is not None and run.total_time == 0.01
            assert [n.node_id for n in nodes] == ["a"]


async def test_a_started_run_is_running_once_its_commit_is_done(
    db: Database, account: Account, workflow: Workflow
):
    writer = RunWriter(db)
    run_id = new_id("run", 20)
    await _start_as(writer, account, workflow, run_id)
    run, _ = await _row(db, account, run_id)
    assert run.status == "running"
    await _finish(writer, run_id, [])
    run, _ = await _row(db, account, run_id)
    assert run.status == "succeeded"


async def test_a_start_that_fails_says_so_on_its_future_alone(
    db: Database, account: Account, workflow: Workflow
):
    writer = RunWriter(db)
    taken = await _start(writer, account, workflow)
    other = new_id("run", 20)
    duplicate = _start_as(writer, account, workflow, taken)
    fine = _start_as(writer, account, workflow, other)
    await asyncio.wait({duplicate, fine})
    assert duplicate.exception() is not None  # the id is taken
    assert fine.exception() is None
    run, _ = await _row(db, account, other)
    assert run.status == "running"


async def test_a_delayed_start_goes_with_its_quick_end_in_one_transaction(
    db: Database, account: Account, workflow: Workflow
):
    writer = RunWriter(db)
    batches: list[int] = []
    write = writer._write

    async def counted(batch: list[Any]) -> None:
        batches.append(len(batch))
        await write(batch)

    writer._write = counted  # type: ignore[method-assign]
    run_id = new_id("run", 20)
    started = _start_as(writer, account, workflow, run_id, delay_s=5.0)
    await asyncio.sleep(0.01)  # the run's quick work
    assert not started.done()
    await _finish(writer, run_id, [_node("a")])

    assert started.done() and batches == [2]
    run, nodes = await _row(db, account, run_id)
    assert (run.status, [n.node_id for n in nodes]) == ("succeeded", ["a"])


async def test_a_delayed_start_alone_is_committed_after_its_delay(
    db: Database, account: Account, workflow: Workflow
):
    writer = RunWriter(db)
    run_id = new_id("run", 20)
    await asyncio.wait_for(_start_as(writer, account, workflow, run_id, delay_s=0.05), 5)
    run, _ = await _row(db, account, run_id)
    assert run.status == "running"


async def test_closing_the_writer_commits_delayed_starts(
    db: Database, account: Account, workflow: Workflow
):
    writer = RunWriter(db)
    run_id = new_id("run", 20)
    started = _start_as(writer, account, workflow, run_id, delay_s=60.0)
    await writer.close()
    assert started.done()
    run, _ = await _row(db, account, run_id)
    assert run.status == "running"


@SQLITE_ONLY  # the engine's pool holds one connection on SQLite only
async def test_a_write_on_sqlite_does_not_wait_for_the_engines_connection(
    db: Database, account: Account, workflow: Workflow
):
    writer = RunWriter(db)
    async with db.session() as reading:
        # A read transaction keeps the engine's one SQLite connection checked out.
        await reading.exec(select(Run))
        run_id = await asyncio.wait_for(_start(writer, account, workflow), 10)
    run, _ = await _row(db, account, run_id)
    assert run.status == "running"
    await writer.close()


async def test_many_runs_at_once_are_all_written(
    db: Database, account: Account, workflow: Workflow
):
    writer = RunWriter(db)
    run_ids = await asyncio.gather(*(_start(writer, account, workflow) for _ in range(40)))
    await asyncio.gather(*(_finish(writer, run_id, [_node("a")]) for run_id in run_ids))
    async with db.session() as session:
        for run_id in run_ids:
            run, nodes = await get_run(session, account_id=account.id, run_id=run_id)
            assert (run.status, len(nodes)) == ("succeeded", 1)


async def test_a_finish_without_a_start_fails_alone(
    db: Database, account: Account, workflow: Workflow
):
    writer = RunWriter(db)
    run_ids = await asyncio.gather(*(_start(writer, account, workflow) for _ in range(5)))
    results = await asyncio.gather(
        *(_finish(writer, run_id, [_node("a")]) for run_id in [*run_ids, "run_none"]),
        return_exceptions=True,
    )
    assert results[:5] == [None] * 5
    assert isinstance(results[5], NotFound)
    async with db.session() as session:
        for run_id in run_ids:
            run, _ = await get_run(session, account_id=account.id, run_id=run_id)
            assert run.status == "succeeded"


async def test_a_cancelled_caller_still_gets_its_run_written(
    db: Database, account: Account, workflow: Workflow
):
    writer = RunWriter(db)
    run_id = await _start(writer, account, workflow)
    finishing = asyncio.create_task(_finish(writer, run_id, [_node("a")]))
    await asyncio.sleep(0)
    finishing.cancel()
    await writer.close()
    run, nodes = await _row(db, account, run_id)
    assert (run.status, len(nodes)) == ("succeeded", 1)


async def test_a_finish_with_a_turn_adds_it_to_the_session(
    db: Database, account: Account, workflow: Workflow
):
    writer = RunWriter(db)
    run_id = await _start(writer, account, workflow)
    await writer.finish(
        run_id=run_id,
        status="succeeded",
        output="hello",
        error=None,
        error_node=None,
        total_time=0.01,
        node_runs=[],
        turn=(account.id, "s1", "hi", "hello"),
    )
    async with db.session() as session:
        turns = await recent_turns(session, account_id=account.id, session_id="s1", ttl_s=60)
    assert [(t.run_id, t.user, t.assistant) for t in turns] == [(run_id, "hi", "hello")]


async def test_a_finish_must_name_a_final_status(
    db: Database, account: Account, workflow: Workflow
):
    writer = RunWriter(db)
    run_id = await _start(writer, account, workflow)
    with pytest.raises(InvalidArgument, match="must be one of"):
        await writer.finish(
            run_id=run_id,
            status="running",
            output=None,
            error=None,
            error_node=None,
            total_time=0.1,
            node_runs=[],
        )
    run, _ = await _row(db, account, run_id)
    assert run.status == "running"


def test_writers_of_two_processes_take_turns(tmp_path):
    # Each _TakeTurns opens the lock file itself, as each process's writer does.
    path = tmp_path / "f.db.writer-lock"
    first, second = _TakeTurns(path), _TakeTurns(path)
    order: list[str] = []

    def take() -> None:
        with second.held():
            order.append("second")

    with first.held():
        waiting = threading.Thread(target=take)
        waiting.start()
        waiting.join(0.1)
        assert order == []  # the second waits while the first holds the lock
        order.append("first done")
    waiting.join(5)
    assert order == ["first done", "second"]


async def test_callers_are_not_left_waiting_when_the_writer_is_cancelled(
    db: Database, account: Account, workflow: Workflow
):
    # As at the event loop's shutdown: the flusher task is cancelled mid-write.
    writer = RunWriter(db)
    writes = [asyncio.create_task(_start(writer, account, workflow)) for _ in range(3)]
    await asyncio.sleep(0)
    assert writer._flusher is not None
    writer._flusher.cancel()
    _, pending = await asyncio.wait(writes, timeout=5)
    assert not pending  # every caller got an answer: written, or cancelled
    await writer.close()


async def test_the_writer_thread_runs_calls_in_order_and_finishes_a_cancelled_one():
    thread = _WriterThread()
    done: list[str] = []
    gate = threading.Event()

    def first() -> str:
        gate.wait(5)
        done.append("first")
        return "first"

    def failing() -> None:
        raise ValueError("no")

    waiting = asyncio.create_task(thread.call(first))
    second = asyncio.create_task(thread.call(lambda: done.append("second")))
    await asyncio.sleep(0.05)
    waiting.cancel()  # its caller goes away while it runs
    gate.set()
    await asyncio.wait_for(second, 5)
    assert done == ["first", "second"]
    with pytest.raises(ValueError, match="no"):
        await thread.call(failing)
    thread.stop()


def _sqlite_path(db: Database) -> Path:
    assert db.engine.url.database
    return Path(db.engine.url.database)


async def _write_while_held(
    db: Database,
    account: Account,
    workflow: Workflow,
    hold: Callable[[threading.Event, threading.Event], None],
) -> None:
    """A run's row written while `hold(locked, release)`, on a thread, keeps a lock from
    setting `locked` until `release` is set: the event loop must keep turning meanwhile,
    and the row be committed once the lock is free."""
    writer = RunWriter(db)
    await _start(writer, account, workflow)  # the writer is set up and idle
    locked, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=hold, args=(locked, release))
    holder.start()
    assert locked.wait(5)
    run_id = new_id("run", 20)
    writing = asyncio.ensure_future(_start_as(writer, account, workflow, run_id))
    started = time.monotonic()
    for _ in range(10):
        await asyncio.sleep(0.01)
    # Ten 10 ms sleeps: well under the 5 s a loop stuck in SQLite's busy wait would take.
    assert time.monotonic() - started < 2.5
    assert not writing.done()  # it waits for the lock, on the writer's thread
    release.set()
    await asyncio.wait_for(writing, 10)
    holder.join(5)
    run, _ = await _row(db, account, run_id)
    assert run.status == "running"
    await writer.close()


@SQLITE_ONLY  # the run writer's own connections are SQLite's
async def test_a_write_meeting_a_held_sqlite_lock_waits_off_the_event_loop(
    db: Database, account: Account, workflow: Workflow
):
    # Another connection's write transaction, as the engine's pool holds one across awaits
    # (which need this very event loop to finish), or as the CLI does.
    path = _sqlite_path(db)

    def hold_the_write_lock(locked: threading.Event, release: threading.Event) -> None:
        other = sqlite3.connect(path)
        other.execute("BEGIN IMMEDIATE")
        locked.set()
        release.wait(10)
        other.rollback()
        other.close()

    await _write_while_held(db, account, workflow, hold_the_write_lock)


@SQLITE_ONLY  # the run writer's own connections are SQLite's
async def test_a_write_meeting_another_processes_writer_waits_off_the_event_loop(
    db: Database, account: Account, workflow: Workflow
):
    path = _sqlite_path(db)

    def hold_the_turn(locked: threading.Event, release: threading.Event) -> None:
        # Another process's writer: the same lock file, opened on its own.
        other = _TakeTurns(path.with_name(path.name + ".writer-lock"))
        with other.held():
            locked.set()
            release.wait(10)
        other.close()

    await _write_while_held(db, account, workflow, hold_the_turn)


@SQLITE_ONLY  # the run writer's own connections are SQLite's
async def test_the_log_of_writes_made_on_the_event_loop_is_checkpointed(
    db: Database, account: Account, workflow: Workflow
):
    # The loop's connection never checkpoints on its own; without the writer thread's
    # checkpoints the log would grow by every run's pages, for ever.
    path = _sqlite_path(db)
    writer = RunWriter(db)
    for _ in range(3 * CHECKPOINT_EVERY):
        run_id = await _start(writer, account, workflow)
        await _finish(writer, run_id, [_node("a"), _node("b")])
    await writer.close()
    checkpointed = sqlite3.connect(path)
    busy, log_frames, copied = checkpointed.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    checkpointed.close()
    # ~4 pages a commit and 1,200 commits: ~4,800 frames if never checkpointed. A PASSIVE
    # checkpoint lets the next writer start the log over, so it holds ~1 interval's worth.
    assert (busy, copied) == (0, log_frames)
    assert log_frames < 4 * 2 * CHECKPOINT_EVERY
