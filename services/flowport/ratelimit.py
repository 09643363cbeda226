"""Requests per second per API key, in-process or shared by every replica through Redis."""

from __future__ import annotations

import math
import time

import limits
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from flowport.errors import ResourceExhausted
from flowport.settings import Settings


class RateLimiter:
    """A moving one-second window per key: `rate_limit_per_key` calls in any second, which
    also bounds a burst to that many. `limits` keeps the window in memory or in Redis."""

    def __init__(self, settings: Settings) -> None:
        url = f"async+{settings.redis_url}" if settings.redis_url else "async+memory://"
        self._limiter = MovingWindowRateLimiter(storage_from_string(url))
        self._item = limits.RateLimitItemPerSecond(settings.rate_limit_per_key)

    async def check(self, key_id: str) -> None:
        if await self._limiter.hit(self._item, "key", key_id):
            return
        stats = await self._limiter.get_window_stats(self._item, "key", key_id)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise ResourceExhausted(
            f"rate limited: at most {self._item.amount} requests per second for this key",
            retry_after_s=retry_after,
        )
