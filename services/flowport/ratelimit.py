"""Requests per second per API key, in-process or shared by every replica through Redis."""

from __future__ import annotations

import math
import time

import limits
import limits.aio.strategies
import limits.strategies
from limits.storage import MemoryStorage, storage_from_string

from flowport.errors import ResourceExhausted
from flowport.settings import Settings


class RateLimiter:
    """A sliding one-second window per key: `rate_limit_per_key` calls per second, a burst
    bounded to that many, and after it calls again as the window slides on. `limits` keeps
    two counters per key (this second's and the last one's, weighted by how much of it is
    still in the window), in memory or in Redis: constant memory and work per call whatever
    the limit, where a moving window keeps every call of the last second (profiled at a
    high limit: a list insert per call growing with the limit)."""

    def __init__(self, settings: Settings) -> None:
        self._item = limits.RateLimitItemPerSecond(settings.rate_limit_per_key)
        self._shared: limits.aio.strategies.SlidingWindowCounterRateLimiter | None = None
        self._local: limits.strategies.SlidingWindowCounterRateLimiter | None = None
        if settings.redis_url:
            storage = storage_from_string(f"async+{settings.redis_url}")
            self._shared = limits.aio.strategies.SlidingWindowCounterRateLimiter(storage)
        else:
            # In process, the synchronous storage: a dict under a lock needs no awaiting,
            # and it expires old counters on a timer thread of its own, while the async one
            # starts a task and a thread hop on the event loop for that after every pass
            # (profiled: ~10 % of a blocking run's CPU).
            self._local = limits.strategies.SlidingWindowCounterRateLimiter(MemoryStorage())

    async def check(self, key_id: str) -> None:
        if self._local is not None:
            if self._local.hit(self._item, "key", key_id):
                return
            stats = self._local.get_window_stats(self._item, "key", key_id)
        else:
            assert self._shared is not None
            if await self._shared.hit(self._item, "key", key_id):
                return
            stats = await self._shared.get_window_stats(self._item, "key", key_id)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise ResourceExhausted(
            f"rate limited: at most {self._item.amount} requests per second for this key",
            retry_after_s=retry_after,
        )
