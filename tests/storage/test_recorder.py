"""The recorder: starts, ends with their nodes, session turns and logs, on both databases;
a run's status moves forward once."""

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

from flowport.engine import NodeFinished
from flowport.errors import InvalidArgument, NotFound
from flowport.ids import new_id
from flowport.storage import (
    Account,
    Database,
    LogEntry,
    NewRun,
    NodeRun,
    NodeRunRecord,
    Recorder,
    Run,
    Workflow,
    create_workflow,
    get_run,
    log_after,
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
    return NodeFinished(
        node_id=node_id,
        type="template",
        name=node_id,
        status="succeeded",
        started_at=datetime.now(UTC),
        time_spend=0.001,
        inputs={"x": 1},
        output={"output": node_id},
        error=None,
    )


def _start_as(
    recorder: Recorder, account: Account, workflow: Workflow, run_id: str, delay_s: float = 0.0
):
    return recorder.start(_new_run(account, workflow, run_id), delay_s=delay_s)


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


async def _start(recorder: Recorder, account: Account, workflow: Workflow) -> str:
    """A new run's row, committed; its id."""
    run_id = new_id("run", 20)
    await _start_as(recorder, account, workflow, run_id)
    return run_id


async def _row(db: Database, account: Account, run_id: str) -> tuple[Run, list[NodeRun]]:
    """The run's record and its nodes, as read back."""
    async with db.session() as session:
        return await get_run(session, account_id=account.id, run_id=run_id)


async def _finish(
    recorder: Recorder, run_id: str, nodes: list[NodeRunRecord], **outcome: Any
) -> bool:
    outcome = {"status": "succeeded", "output": "ok", "error": None, **outcome}
    return await recorder.finish(
        run_id=run_id,
        error_node=None,
        total_time=0.01,
        node_runs=nodes,
        **outcome,
    )


async def test_a_started_run_is_running_and_a_finished_one_has_its_nodes(
    db: Database, account: Account, workflow: Workflow
):
    recorder = Recorder(db)
    run_id = await _start(recorder, account, workflow)
    run, nodes = await _row(db, account, run_id)
    assert (run.status, run.inputs, run.session_id, nodes) == ("running", {"height": 1.8}, "s1", [])

    await _finish(recorder, run_id, [_node("a"), _node("b")])
    run, nodes = await _row(db, account, run_id)
    assert (run.status, run.output, run.finished_at is not None) == ("succeeded", "ok", True)
    assert [(n.node_id, n.inputs, n.output) for n in nodes] == [
        ("a", {"x": 1}, {"output": "a"}),
        ("b", {"x": 1}, {"output": "b"}),
    ]


async def test_a_run_started_and_ended_at_once_is_one_finished_row(
    db: Database, account: Account, workflow: Workflow
):
    recorder = Recorder(db)
    run_ids = [new_id("run", 20) for _ in range(3)]
    # Started and ended before the recorder runs: each start and end share one batch.
    for run_id in run_ids:
        _start_as(recorder, account, workflow, run_id)
    await asyncio.gather(*(_finish(recorder, run_id, [_node("a")]) for run_id in run_ids))
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


async def test_a_run_never_started_is_written_once_with_its_end(
    db: Database, account: Account, workflow: Workflow
):
    recorder = Recorder(db)
    alone, paired, other = (new_id("run", 20) for _ in range(3))

    async def finish_unstarted(run_id: str, nodes: list[NodeRunRecord]) -> bool:
        return await _finish(recorder, run_id, nodes, start=_new_run(account, workflow, run_id))

    # In a batch of its own, and in one with another run's start and end.
    assert await finish_unstarted(alone, [_node("a")])
    _start_as(recorder, account, workflow, other)
    await asyncio.gather(_finish(recorder, other, []), finish_unstarted(paired, []))
    for run_id in (alone, paired, other):
        run, _ = await _row(db, account, run_id)
        assert (run.status, run.output, run.inputs) == ("succeeded", "ok", {"height": 1.8})
        # Started when it was admitted, not when its row was written.
        assert run.finished_at is not None and run.started_at <= run.finished_at
    _, nodes = await _row(db, account, alone)
    assert [n.node_id for n in nodes] == ["a"]
    await recorder.close()


async def test_a_started_run_is_running_once_its_commit_is_done(
    db: Database, account: Account, workflow: Workflow
):
    recorder = Recorder(db)
    run_id = new_id("run", 20)
    await _start_as(recorder, account, workflow, run_id)
    run, _ = await _row(db, account, run_id)
    assert run.status == "running"
    await _finish(recorder, run_id, [])
    run, _ = await _row(db, account, run_id)
    assert run.status == "succeeded"


async def test_a_start_that_fails_says_so_on_its_future_alone(
    db: Database, account: Account, workflow: Workflow
):
    recorder = Recorder(db)
    taken = await _start(recorder, account, workflow)
    other = new_id("run", 20)
    duplicate = _start_as(recorder, account, workflow, taken)
    fine = _start_as(recorder, account, workflow, other)
    await asyncio.wait({duplicate, fine})
    assert duplicate.exception() is not None  # the id is taken
    assert fine.exception() is None
    run, _ = await _row(db, account, other)
    assert run.status == "running"


async def test_a_delayed_start_goes_with_its_quick_end_in_one_transaction(
    db: Database, account: Account, workflow: Workflow
):
    recorder = Recorder(db)
    batches: list[int] = []
    write = recorder._commit

    async def counted(batch: list[Any], *, alone: bool) -> bool:
        batches.append(len(batch))
        return await write(batch, alone=alone)

    recorder._commit = counted  # type: ignore[method-assign]
    run_id = new_id("run", 20)
    started = _start_as(recorder, account, workflow, run_id, delay_s=5.0)
    await asyncio.sleep(0.01)  # the run's quick work
    assert not started.done()
    await _finish(recorder, run_id, [_node("a")])

    assert started.done() and batches == [2]
    run, nodes = await _row(db, account, run_id)
    assert (run.status, [n.node_id for n in nodes]) == ("succeeded", ["a"])


async def test_a_delayed_start_alone_is_committed_after_its_delay(
    db: Database, account: Account, workflow: Workflow
):
    recorder = Recorder(db)
    run_id = new_id("run", 20)
    await asyncio.wait_for(_start_as(recorder, account, workflow, run_id, delay_s=0.05), 5)
    run, _ = await _row(db, account, run_id)
    assert run.status == "running"


async def test_closing_the_recorder_commits_delayed_starts(
    db: Database, account: Account, workflow: Workflow
):
    recorder = Recorder(db)
    run_id = new_id("run", 20)
    started = _start_as(recorder, account, workflow, run_id, delay_s=60.0)
    await recorder.close()
    assert started.done()
    run, _ = await _row(db, account, run_id)
    assert run.status == "running"


@SQLITE_ONLY  # the engine's pool holds one connection on SQLite only
async def test_a_write_on_sqlite_does_not_wait_for_the_engines_connection(
    db: Database, account: Account, workflow: Workflow
):
    recorder = Recorder(db)
    async with db.session() as reading:
        # A read transaction keeps the engine's one SQLite connection checked out.
        await reading.exec(select(Run))
        run_id = await asyncio.wait_for(_start(recorder, account, workflow), 10)
    run, _ = await _row(db, account, run_id)
    assert run.status == "running"
    await recorder.close()


async def test_many_runs_at_once_are_all_written(
    db: Database, account: Account, workflow: Workflow
):
    recorder = Recorder(db)
    run_ids = await asyncio.gather(*(_start(recorder, account, workflow) for _ in range(40)))
    await asyncio.gather(*(_finish(recorder, run_id, [_node("a")]) for run_id in run_ids))
    async with db.session() as session:
        for run_id in run_ids:
            run, nodes = await get_run(session, account_id=account.id, run_id=run_id)
            assert (run.status, len(nodes)) == ("succeeded", 1)


async def test_a_finish_without_a_start_fails_alone(
    db: Database, account: Account, workflow: Workflow
):
    recorder = Recorder(db)
    run_ids = await asyncio.gather(*(_start(recorder, account, workflow) for _ in range(5)))
    results = await asyncio.gather(
        *(_finish(recorder, run_id, [_node("a")]) for run_id in [*run_ids, "run_none"]),
        return_exceptions=True,
    )
    assert results[:5] == [True] * 5
    assert isinstance(results[5], NotFound)
    async with db.session() as session:
        for run_id in run_ids:
            run, _ = await get_run(session, account_id=account.id, run_id=run_id)
            assert run.status == "succeeded"


async def test_a_cancelled_caller_still_gets_its_run_written(
    db: Database, account: Account, workflow: Workflow
):
    recorder = Recorder(db)
    run_id = await _start(recorder, account, workflow)
    finishing = asyncio.create_task(_finish(recorder, run_id, [_node("a")]))
    await asyncio.sleep(0)
    finishing.cancel()
    await recorder.close()
    run, nodes = await _row(db, account, run_id)
    assert (run.status, len(nodes)) == ("succeeded", 1)


async def test_a_finish_with_a_turn_adds_it_to_the_session(
    db: Database, account: Account, workflow: Workflow
):
    recorder = Recorder(db)
    run_id = await _start(recorder, account, workflow)
    await recorder.finish(
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
    recorder = Recorder(db)
    run_id = await _start(recorder, account, workflow)
    with pytest.raises(InvalidArgument, match="must be one of"):
        await recorder.finish(
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


def _frames(first: int, last: int) -> str:
    return "".join(f"id: {n}\nevent: stream\ndata: {{}}\n\n" for n in range(first, last + 1))


async def _log(db: Database, run_id: str) -> list[tuple[int, int, str]]:
    async with db.session() as session:
        entries = await log_after(session, run_id=run_id, after=0)
    return [(e.first_seq, e.last_seq, e.frames) for e in entries]


async def test_log_entries_of_a_live_run_wait_and_go_as_one_row(
    db: Database, account: Account, workflow: Workflow
):
    logged: list[list[str]] = []
    # An interval long enough that reading the log back (a first, cold read on a busy
    # machine) surely ends within it.
    recorder = Recorder(db, on_logged=logged.append, log_flush_s=1.0)
    run_id = await _start(recorder, account, workflow)
    for n in range(1, 4):
        recorder.log(LogEntry(run_id, n, n, _frames(n, n)))
    assert await _log(db, run_id) == []  # not yet: within the flush interval

    await asyncio.sleep(1.2)
    assert await _log(db, run_id) == [(1, 3, _frames(1, 3))]
    assert logged == [[run_id]]
    await recorder.close()


async def test_log_entries_go_at_once_with_any_other_write(
    db: Database, account: Account, workflow: Workflow
):
    recorder = Recorder(db, log_flush_s=60)
    run_id = await _start(recorder, account, workflow)
    recorder.log(LogEntry(run_id, 1, 2, _frames(1, 2)))
    await _start(recorder, account, workflow)  # another run's start takes them along
    assert await _log(db, run_id) == [(1, 2, _frames(1, 2))]


async def test_a_runs_last_entries_are_written_only_with_its_end(
    db: Database, account: Account, workflow: Workflow
):
    recorder = Recorder(db)
    run_id = await _start(recorder, account, workflow)
    assert await _finish(recorder, run_id, [], log=[LogEntry(run_id, 1, 2, _frames(1, 2))])
    assert await _log(db, run_id) == [(1, 2, _frames(1, 2))]

    # A second end loses: nothing of it is written, its last frames included.
    late = [LogEntry(run_id, 3, 3, _frames(3, 3))]
    assert not await _finish(recorder, run_id, [_node("x")], status="failed", log=late)
    run, nodes = await _row(db, account, run_id)
    assert (run.status, run.output, nodes) == ("succeeded", "ok", [])
    assert await _log(db, run_id) == [(1, 2, _frames(1, 2))]


async def test_in_one_batch_each_end_wins_or_loses_on_its_own(
    db: Database, account: Account, workflow: Workflow
):
    recorder = Recorder(db)
    ended = await _start(recorder, account, workflow)
    live = await _start(recorder, account, workflow)
    await _finish(recorder, ended, [])
    # Both ends in one batch: the one whose run had ended loses, the other wins.
    results = await asyncio.gather(
        _finish(recorder, ended, [_node("a")], status="cancelled"),
        _finish(recorder, live, [_node("b")]),
    )
    assert results == [False, True]
    assert (await _row(db, account, ended))[0].status == "succeeded"
    run, nodes = await _row(db, account, live)
    assert (run.status, [n.node_id for n in nodes]) == ("succeeded", ["b"])


def test_recorders_of_two_processes_take_turns(tmp_path):
    # Each _TakeTurns opens the lock file itself, as each process's recorder does.
    path = tmp_path / "f.db.recorder-lock"
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


async def test_callers_are_not_left_waiting_when_the_recorder_is_cancelled(
    db: Database, account: Account, workflow: Workflow
):
    # As at the event loop's shutdown: the flusher task is cancelled mid-write.
    recorder = Recorder(db)
    writes = [asyncio.create_task(_start(recorder, account, workflow)) for _ in range(3)]
    await asyncio.sleep(0)
    assert recorder._flusher is not None
    recorder._flusher.cancel()
    _, pending = await asyncio.wait(writes, timeout=5)
    assert not pending  # every caller got an answer: written, or cancelled
    await recorder.close()


async def test_the_recorder_thread_runs_calls_in_order_and_finishes_a_cancelled_one():
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
    recorder = Recorder(db)
    await _start(recorder, account, workflow)  # the recorder is set up and idle
    locked, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=hold, args=(locked, release))
    holder.start()
    assert locked.wait(5)
    run_id = new_id("run", 20)
    writing = asyncio.ensure_future(_start_as(recorder, account, workflow, run_id))
    started = time.monotonic()
    for _ in range(10):
        await asyncio.sleep(0.01)
    # Ten 10 ms sleeps: well under the 5 s a loop stuck in SQLite's busy wait would take.
    assert time.monotonic() - started < 2.5
    assert not writing.done()  # it waits for the lock, on the recorder's thread
    release.set()
    await asyncio.wait_for(writing, 10)
    holder.join(5)
    run, _ = await _row(db, account, run_id)
    assert run.status == "running"
    await recorder.close()


@SQLITE_ONLY  # the recorder's own SQLite connections
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


@SQLITE_ONLY  # the recorder's own SQLite connections
async def test_a_write_meeting_another_processes_recorder_waits_off_the_event_loop(
    db: Database, account: Account, workflow: Workflow
):
    path = _sqlite_path(db)

    def hold_the_turn(locked: threading.Event, release: threading.Event) -> None:
        # Another process's recorder: the same lock file, opened on its own.
        other = _TakeTurns(path.with_name(path.name + ".writer-lock"))
        with other.held():
            locked.set()
            release.wait(10)
        other.close()

    await _write_while_held(db, account, workflow, hold_the_turn)


@SQLITE_ONLY  # the recorder's own SQLite connections
async def test_the_log_of_writes_made_on_the_event_loop_is_checkpointed(
    db: Database, account: Account, workflow: Workflow
):
    # The loop's connection never checkpoints on its own; without the recorder thread's
    # checkpoints the log would grow by every run's pages, for ever.
    path = _sqlite_path(db)
    recorder = Recorder(db)
    for _ in range(3 * CHECKPOINT_EVERY):
        run_id = await _start(recorder, account, workflow)
        await _finish(recorder, run_id, [_node("a"), _node("b")])
    await recorder.close()
    checkpointed = sqlite3.connect(path)
    busy, log_frames, copied = checkpointed.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    checkpointed.close()
    # ~4 pages a commit and 1,200 commits: ~4,800 frames if never checkpointed. A PASSIVE
    # checkpoint lets the next recorder start the log over, so it holds ~1 interval's worth.
    assert (busy, copied) == (0, log_frames)
    assert log_frames < 4 * 2 * CHECKPOINT_EVERY
