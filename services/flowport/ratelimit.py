"""Requests per second per API key: shared by every replica through Redis, or else each
replica's share of it in process."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
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
    call after 10 ms without calls, a cost on each call of a key called less often.
    Shared by every replica through Redis, `limits`' sliding window counter: two counters
    per key (this second's and the last one's, weighted by how much of it is still in the
    window), constant memory and work per call whatever the limit. Both let a key make its
    limit's calls at once and then as many per second.

    Without Redis, each of the `replicas()` live replicas (the workers of `--workers N` are
    replicas too) allows its share of the limit, so a key's calls spread over them by the
    load balancer get the limit in all, not that many times it."""

    def __init__(
        self,
        settings: Settings,
        *,
        replicas: Callable[[], int] = lambda: 1,
        on_limited: Callable[[], object] = lambda: None,
    ) -> None:
        self._rate = settings.rate_limit_per_key
        # Told of each call refused (the metrics count them).
        self._on_limited = on_limited
        self._replicas = replicas
        self._message = f"rate limited: at most {self._rate} requests per second for this key"
        self._item: limits.RateLimitItem | None = None
        self._shared: limits.aio.strategies.SlidingWindowCounterRateLimiter | None = None
        self._buckets: dict[str, AsyncLimiter] = {}
        # The number of replicas the buckets were made for: buckets of another share are
        # dropped when it changes.
        self._shares = 1
        if settings.redis_url:
            # Imported only when used: a process without Redis never holds it.
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
            # One call's worth drains in shares/rate seconds; Retry-After counts whole ones.
            retry_after = max(1, math.ceil(self._shares / self._rate))
            self._on_limited()
            raise RateLimited(self._message, retry_after_s=retry_after)
        assert self._item is not None  # set with _shared
        if await self._shared.hit(self._item, "key", key_id):
            return
        stats = await self._shared.get_window_stats(self._item, "key", key_id)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        self._on_limited()
        raise RateLimited(self._message, retry_after_s=retry_after)

    def _bucket(self, key_id: str) -> AsyncLimiter:
        shares = max(1, self._replicas())
        if shares != self._shares:
            self._shares, self._buckets = shares, {}
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
            # This replica's share: rate/shares calls a second, at least one call at a time
            # (a burst of one, then one per shares/rate seconds).
            burst = max(1.0, self._rate / shares)
            period = burst * shares / self._rate
            bucket = self._buckets[key_id] = AsyncLimiter(burst, time_period=period)
        return bucket
