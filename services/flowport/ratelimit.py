"""Requests per second per API key, in-process or shared by every replica through Redis."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from aiolimiter import AsyncLimiter

from flowport.errors import RateLimited
from flowport.settings import Settings

if TYPE_CHECKING:
    import limits
    import limits.aio.strategies

# Beyond this many keys the in-process buckets of idle keys are dropped (a bucket that has
# drained is the same as a new one), so unknown keys cannot grow them without bound.
MAX_LOCAL_KEYS = 10_000


class RateLimiter:
    """`rate_limit_per_key` calls per second per key, a burst bounded to that many.

    In process, a leaky bucket per key (`aiolimiter`): it fills by one per call and drains
    at the limit's rate, with no thread or task of its own. `limits`' in-process storage
    was dropped for it: it starts a timer thread, and waits for it to start, on the first
    call after 10 ms without calls, ~0.45 ms on each call of a key called less often.
    Shared by every replica through Redis, `limits`' sliding window counter: two counters
    per key (this second's and the last one's, weighted by how much of it is still in the
    window), constant memory and work per call whatever the limit. Both let a key make its
    limit's calls at once and then as many per second."""

    def __init__(self, settings: Settings) -> None:
        self._rate = settings.rate_limit_per_key
        self._message = f"rate limited: at most {self._rate} requests per second for this key"
        self._item: limits.RateLimitItem | None = None
        self._shared: limits.aio.strategies.SlidingWindowCounterRateLimiter | None = None
        self._buckets: dict[str, AsyncLimiter] = {}
        if settings.redis_url:
            # Imported only when used: a process without Redis never holds it (~2 MiB).
            import limits
            import limits.aio.strategies
            from limits.storage import storage_from_string

            self._item = limits.RateLimitItemPerSecond(self._rate)
            storage = storage_from_string(f"async+{settings.redis_url}")
            self._shared = limits.aio.strategies.SlidingWindowCounterRateLimiter(storage)

    async def check(self, key_id: str) -> None:
        if self._shared is None:
            bucket = self._bucket(key_id)
            if bucket.has_capacity():
                await bucket.acquire()  # returns at once: there is capacity
                return
            # One call's worth drains in 1/rate seconds; Retry-After counts whole seconds.
            raise RateLimited(self._message, retry_after_s=1)
        assert self._item is not None  # set with _shared
        if await self._shared.hit(self._item, "key", key_id):
            return
        stats = await self._shared.get_window_stats(self._item, "key", key_id)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimited(self._message, retry_after_s=retry_after)

    def _bucket(self, key_id: str) -> AsyncLimiter:
        bucket = self._buckets.get(key_id)
        if bucket is None:
            if len(self._buckets) >= MAX_LOCAL_KEYS:
                self._buckets = {
                    key: kept
                    for key, kept in self._buckets.items()
                    if not kept.has_capacity(kept.max_rate)  # still holds recent calls
                }
                if len(self._buckets) >= MAX_LOCAL_KEYS:
                    self._buckets = {}  # every one busy: each may burst once more
            bucket = self._buckets[key_id] = AsyncLimiter(self._rate, time_period=1.0)
        return bucket
