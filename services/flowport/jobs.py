"""Durable jobs that every replica works on: background runs to execute, webhook deliveries
to attempt. On PostgreSQL, procrastinate's queue (a library made for it: jobs taken with
`FOR UPDATE SKIP LOCKED`, woken by LISTEN/NOTIFY, workers' heartbeats in the database). On
SQLite, whose replicas share one host, the same interface over the `jobs` table.

A job runs at least once: a handler must be safe to run again (a background run is claimed
by a conditional write, so it executes at most once; a delivery may be sent twice after a
crash, and its receiver tells by `webhook-id`). A handler that fails is logged and its job
dropped (a handler defers its own next attempt when it wants one); a job cut short by the
replica stopping goes back to the queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from flowport.storage import Database, Job
from flowport.storage.models import utc_now

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[None]]
# procrastinate's queue of Flowport's jobs.
QUEUE = "flowport"
# How often SQLite's replicas look for due jobs when nothing woke them.
POLL_S = 0.25


class Jobs(Protocol):
    async def start(self, handlers: Mapping[str, Handler]) -> None:
        """Begins working on due jobs, `handlers[kind](args)` for each."""

    async def defer(
        self,
        kind: str,
        args: dict[str, Any],
        *,
        at: datetime | None = None,
        lock: str | None = None,
    ) -> None:
        """A job for any replica, due `at` (now if None). `lock`: while a job with it waits,
        deferring another is a no-op."""

    async def requeue_stalled(self, alive: Collection[str]) -> int:
        """Jobs taken by replicas no longer `alive` go back to the queue; returns how many."""

    async def stop(self) -> None:
        """Takes no more jobs; those running get the grace period to end, then are
        cancelled (a cancelled job goes back to the queue)."""


def open_jobs(
    db: Database, *, replica_id: str, concurrency: int, grace_s: float, lease_s: float
) -> Jobs:
    """`concurrency` jobs at once on this replica (0: it takes none, and only defers);
    `grace_s`: how long running jobs may go on once the replica stops; `lease_s`: a
    replica silent this long is dead, its jobs go back to the queue."""
    if db.url.get_backend_name() == "sqlite":
        return SqliteJobs(db, replica_id=replica_id, concurrency=concurrency, grace_s=grace_s)
    return ProcrastinateJobs(
        db, replica_id=replica_id, concurrency=concurrency, grace_s=grace_s, lease_s=lease_s
    )


def _logged(kind: str, handler: Handler) -> Handler:
    """The handler, its failures logged and swallowed: the job is done with either way."""

    async def run(args: dict[str, Any]) -> None:
        try:
            await handler(args)
        except Exception:
            log.exception("job %s %s failed", kind, args)

    return run


class SqliteJobs:
    """The jobs table, polled every POLL_S and woken at once by this process's own defers."""

    def __init__(self, db: Database, *, replica_id: str, concurrency: int, grace_s: float) -> None:
        self._db = db
        self._me = replica_id
        self._concurrency = concurrency
        self._grace_s = grace_s
        self._handlers: Mapping[str, Handler] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    async def start(self, handlers: Mapping[str, Handler]) -> None:
        self._handlers = {kind: _logged(kind, handler) for kind, handler in handlers.items()}
        if self._concurrency > 0:
            self._loop_task = asyncio.create_task(self._work(), name="jobs")

    async def defer(
        self,
        kind: str,
        args: dict[str, Any],
        *,
        at: datetime | None = None,
        lock: str | None = None,
    ) -> None:
        row = {
            "kind": kind,
            "args": args,
            "lock": lock,
            "status": "todo",
            "run_at": at or utc_now(),
        }
        row["created_at"] = utc_now()

        async def add(session: Any) -> None:
            await session.exec(insert(Job).values(row))
            await session.commit()

        with contextlib.suppress(IntegrityError):  # a waiting job holds the lock
            await self._db.run(add)
        self._wake.set()

    async def requeue_stalled(self, alive: Collection[str]) -> int:
        async def requeue(session: Any) -> int:
            result = await session.exec(
                update(Job)
                .where(col(Job.status) == "doing", col(Job.owner).not_in(list(alive)))
                .values(status="todo", owner=None)
            )
            await session.commit()
            return int(result.rowcount)

        requeued = await self._db.run(requeue)
        if requeued:
            self._wake.set()
        return requeued

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._running:
            _, late = await asyncio.wait(self._running, timeout=self._grace_s)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)

    async def _work(self) -> None:
        while True:
            free = self._concurrency - len(self._running)
            claimed = await self._claim(free) if free > 0 else []
            for job_id, kind, args in claimed:
                task = asyncio.create_task(self._handle(job_id, kind, args), name=f"job {kind}")
                self._running.add(task)
                task.add_done_callback(self._done)
            if claimed:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_S)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wake.set()  # a slot is free

    async def _claim(self, count: int) -> list[tuple[int, str, dict[str, Any]]]:
        async def claim(session: Any) -> list[tuple[int, str, dict[str, Any]]]:
            due = (
                select(col(Job.id))
                .where(col(Job.status) == "todo", col(Job.run_at) <= utc_now())
                .order_by(col(Job.run_at), col(Job.id))
                .limit(count)
            )
            result = await session.exec(
                update(Job)
                .where(col(Job.id).in_(due.scalar_subquery()), col(Job.status) == "todo")
                .values(status="doing", owner=self._me)
                .returning(col(Job.id), col(Job.kind), col(Job.args))
            )
            rows = [(row[0], row[1], row[2]) for row in result.all()]
            await session.commit()
            return rows

        return await self._db.run(claim)

    async def _handle(self, job_id: int, kind: str, args: dict[str, Any]) -> None:
        try:
            await self._handlers[kind](args)
        except asyncio.CancelledError:
            # Stopping: the job goes back to the queue for the next replica.
            await self._db.run(lambda s: _release(s, job_id))
            raise
        await self._db.run(lambda s: _finished(s, job_id))


async def _finished(session: Any, job_id: int) -> None:
    await session.exec(delete(Job).where(col(Job.id) == job_id))
    await session.commit()


async def _release(session: Any, job_id: int) -> None:
    try:
        await session.exec(
            update(Job).where(col(Job.id) == job_id).values(status="todo", owner=None)
        )
        await session.commit()
    except IntegrityError:
        # Another job with its lock waits already: that one will do.
        await session.rollback()
        await _finished(session, job_id)


class ProcrastinateJobs:
    """procrastinate's App on the database's own connection settings; its worker runs in
    this process's event loop, `concurrency` jobs at once, and beats as often as a replica
    renews its lease."""

    def __init__(
        self,
        db: Database,
        *,
        replica_id: str,
        concurrency: int,
        grace_s: float,
        lease_s: float,
    ) -> None:
        import procrastinate

        self._me = replica_id
        self._concurrency = concurrency
        self._grace_s = grace_s
        self._lease_s = lease_s
        connector = procrastinate.PsycopgConnector(
            conninfo=db.url.set(drivername="postgresql").render_as_string(hide_password=False),
            kwargs=db.driver_options,
        )
        self._app = procrastinate.App(connector=connector)
        self._worker: asyncio.Task[None] | None = None

    async def start(self, handlers: Mapping[str, Handler]) -> None:
        import procrastinate

        for kind, handler in handlers.items():
            self._app.task(
                name=f"flowport.{kind}",
                queue=QUEUE,
                # Only a job cut short by a stopping replica reaches procrastinate failed
                # (handlers log their own failures): it goes back to the queue, as often as
                # that happens.
                retry=procrastinate.RetryStrategy(),
            )(_with_kwargs(_logged(kind, handler)))
        await self._app.open_async()
        if self._concurrency == 0:
            return
        self._worker = asyncio.create_task(
            self._app.run_worker_async(
                queues=[QUEUE],
                name=self._me,
                concurrency=self._concurrency,
                install_signal_handlers=False,
                listen_notify=True,
                delete_jobs="always",
                shutdown_graceful_timeout=self._grace_s,
                update_heartbeat_interval=self._lease_s / 3,
                stalled_worker_timeout=self._lease_s,
            ),
            name="jobs",
        )

    async def defer(
        self,
        kind: str,
        args: dict[str, Any],
        *,
        at: datetime | None = None,
        lock: str | None = None,
    ) -> None:
        from procrastinate.exceptions import AlreadyEnqueued

        task = self._app.tasks[f"flowport.{kind}"]
        with contextlib.suppress(AlreadyEnqueued):  # a waiting job holds the lock
            await task.configure(schedule_at=at, queueing_lock=lock).defer_async(**args)

    async def requeue_stalled(self, alive: Collection[str]) -> int:
        """procrastinate knows its own workers' heartbeats: jobs of workers that stopped
        beating go back to the queue."""
        manager = self._app.job_manager
        stalled = list(
            await manager.get_stalled_jobs(queue=QUEUE, seconds_since_heartbeat=self._lease_s)
        )
        for job in stalled:
            await manager.retry_job(job)
        return len(stalled)

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        await self._app.close_async()


def _with_kwargs(handler: Handler) -> Callable[..., Awaitable[None]]:
    """procrastinate passes a job's arguments as keywords."""

    async def run(**args: Any) -> None:
        await handler(args)

    return run
