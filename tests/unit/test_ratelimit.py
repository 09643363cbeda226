"""The per-key limit, in process and shared through Redis: the same answers from both."""

from __future__ import annotations

import pytest

from flowport.errors import ResourceExhausted
from flowport.ids import random_token
from flowport.ratelimit import RateLimiter
from flowport.settings import Settings

BACKENDS = {"memory": None, "redis": "redis://127.0.0.1:6379/0"}


@pytest.mark.parametrize("backend", sorted(BACKENDS))
async def test_a_key_gets_its_limit_per_second_and_then_a_retry_after(backend: str) -> None:
    limiter = RateLimiter(Settings(rate_limit_per_key=3, redis_url=BACKENDS[backend]))
    key, other = f"key_{random_token(12)}", f"key_{random_token(12)}"
    for _ in range(3):
        await limiter.check(key)
    with pytest.raises(ResourceExhausted) as refused:
        await limiter.check(key)
    assert refused.value.message == "rate limited: at most 3 requests per second for this key"
    assert refused.value.retry_after_s == 1
    # Another key has a window of its own.
    await limiter.check(other)
