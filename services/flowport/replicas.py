"""This process as one replica of the service: its identity and lease, the reaper that fails
the runs of replicas whose lease expired, and the channel that carries messages to the
others (cancel a run, forget a key or workflow, a run's log grew)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import random
import socket
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from flowport import flowai, statuses
from flowport.channel import Channel, open_channel
from flowport.errors import Unavailable
from flowport.ids import new_id
from flowport.storage import (
    Database,
    expire_log,
    fail_orphaned_runs,
    live_replicas,
    register_replica,
    remove_replica,
    renew_lease,
)
from flowport.storage.models import utc_now

log = logging.getLogger(__name__)

REPLICA_STOPPED = "the replica running it stopped"
# Renewals and reaps per lease: a replica misses two renewals before it is taken for dead.
BEATS_PER_LEASE = 3

# Every message names ids (of runs, keys or workflows); its handler takes one at a time.
Handler = Callable[[str], object]


async def reap(db: Database, *, lease_s: float, log_retention_s: float) -> list[str]:
    """Fails the runs of replicas whose lease expired (their logs end with an error frame,
    so their followers end too), and drops log entries older than the retention."""
    stopped = Unavailable(REPLICA_STOPPED)
    frame = flowai.error_frame(stopped)
    code = statuses.of(stopped).rest
    failed = await db.run(
        lambda session: fail_orphaned_runs(
            session, lease_s=lease_s, reason=REPLICA_STOPPED, code=code, last_frame=frame
        )
    )
    before = utc_now() - timedelta(seconds=log_retention_s)
    await db.run(lambda session: expire_log(session, before=before))
    if failed:
        log.warning("failed %d runs whose replica stopped: %s", len(failed), ", ".join(failed))
    return failed


class Replica:
    def __init__(self, db: Database, *, lease_s: float, log_retention_s: float) -> None:
        self.id = new_id("rep", 16)
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self._db = db
        self._lease_s = lease_s
        self._log_retention_s = log_retention_s
        self._channel: Channel = open_channel(db.url, self.id)
        self._handlers: dict[str, Handler] = {}
        self._tasks: list[asyncio.Task[None]] = []
        # Messages being sent or handled, kept until done (the loop holds tasks weakly).
        self._background: set[asyncio.Task[Any]] = set()
        # Replicas alive as of the last renewal, this one included.
        self.live_count = 1
        self.alive: list[str] = [self.id]
        self._beats: list[Callable[[], Awaitable[None]]] = []

    def on(self, kind: str, handler: Handler) -> None:
        """`handler(id)` for each id of each message of `kind` from another replica; an
        awaitable it returns runs on its own."""
        self._handlers[kind] = handler

    def every_beat(self, work: Callable[[], Awaitable[None]]) -> None:
        """`work()` on each beat of the reaper (BEATS_PER_LEASE times a lease), from `start`
        on; a failure is logged, and the next beat tries again."""
        self._beats.append(work)

    async def start(self) -> None:
        await self._db.run(
            lambda s: register_replica(s, replica_id=self.id, host=self.host, pid=self.pid)
        )
        await self._channel.start(self._deliver)
        # The others count again at once: a key's rate limit is shared among them.
        self.on("joined", lambda _: self._count())
        self.on("left", lambda _: self._count())
        await self.publish("joined", self.id)
        await self._count()
        self._tasks = [
            asyncio.create_task(self._every_beat(self._renew), name="lease"),
            asyncio.create_task(self._every_beat(self._reap), name="reaper"),
            *(asyncio.create_task(self._every_beat(work)) for work in self._beats),
        ]

    async def stop(self) -> None:
        """After the replica's runs ended: it leaves, and nobody reaps it."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._db.run(lambda s: remove_replica(s, replica_id=self.id))
        await self.publish("left", self.id)
        await self._channel.close()

    def publish_soon(self, kind: str, *args: str) -> None:
        """`publish`, without waiting for it."""
        self._spawn(self.publish(kind, *args))

    async def publish(self, kind: str, *args: str) -> None:
        """Tells every other replica; a channel that fails is logged, not raised: the
        others find out within their caches' and polls' bounds."""
        try:
            await self._channel.publish(kind, args)
        except Exception:
            log.warning("replicas' channel: could not send %s", kind, exc_info=True)

    def _deliver(self, kind: str, args: list[str]) -> None:
        handler = self._handlers.get(kind)
        if handler is None:
            return
        for arg in args:
            try:
                result = handler(arg)
            except Exception:
                log.exception("replicas' channel: handling %s %s failed", kind, arg)
                continue
            if inspect.isawaitable(result):
                self._spawn(result)

    def _spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _every_beat(self, work: Callable[[], object]) -> None:
        interval = self._lease_s / BEATS_PER_LEASE
        while True:
            # Spread: replicas started together do not all write at once.
            await asyncio.sleep(interval * random.uniform(0.8, 1.0))
            try:
                result = work()
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                log.warning(
                    "%s failed; trying again in %.1f s", work.__name__, interval, exc_info=True
                )

    async def _renew(self) -> None:
        renewed = await self._db.run(
            lambda s: renew_lease(s, replica_id=self.id, host=self.host, pid=self.pid)
        )
        if not renewed:
            log.warning(
                "this replica's lease had expired (no renewal for %.0f s): the others failed "
                "its runs",
                self._lease_s,
            )
        await self._count()

    async def _count(self) -> None:
        alive = await self._db.run(lambda s: live_replicas(s, lease_s=self._lease_s))
        self.alive = [replica.id for replica in alive] or [self.id]
        self.live_count = len(self.alive)

    async def _reap(self) -> None:
        await reap(self._db, lease_s=self._lease_s, log_retention_s=self._log_retention_s)
