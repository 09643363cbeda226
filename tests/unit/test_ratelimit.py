"""The per-key limit, in process and shared through Redis: the same answers from both."""

from __future__ import annotations

import asyncio
import threading

import pytest

from flowport import ratelimit
from flowport.errors import RateLimited
from flowport.ids import random_token
from flowport.ratelimit import RateLimiter
from flowport.settings import Settings


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_a_key_gets_its_limit_per_second_and_then_a_retry_after(
    backend: str, request: pytest.FixtureRequest
) -> None:
    redis_url = request.getfixturevalue("redis_url") if backend == "redis" else None
    limiter = RateLimiter(Settings(rate_limit_per_key=3, redis_url=redis_url))
    key, other = f"key_{random_token(12)}", f"key_{random_token(12)}"
    for _ in range(3):
        await limiter.check(key)
    with pytest.raises(RateLimited) as refused:
        await limiter.check(key)
    assert refused.value.message == "rate limited: at most 3 requests per second for this key"
    assert refused.value.retry_after_s == 1
    # Another key has a window of its own.
    await limiter.check(other)


async def test_the_in_process_limit_starts_no_thread_however_calls_are_spaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # limits' in-process storage started a timer thread, and waited for it to start, on
    # the first call after 10 ms without one: ~0.45 ms on every call of a quiet key.
    started: list[threading.Thread] = []
    start = threading.Thread.start

    def counted(thread: threading.Thread) -> None:
        started.append(thread)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", counted)
    limiter = RateLimiter(Settings(rate_limit_per_key=100))
    for _ in range(3):
        await limiter.check("key")
        await asyncio.sleep(0.02)
    assert started == []


async def test_a_bucket_drains_at_the_limits_rate() -> None:
    limiter = RateLimiter(Settings(rate_limit_per_key=20))
    for _ in range(20):
        await limiter.check("key")
    with pytest.raises(RateLimited):
        await limiter.check("key")
    await asyncio.sleep(0.2)  # 20 a second: four calls' worth has drained
    for _ in range(3):
        await limiter.check("key")


async def test_buckets_of_idle_keys_are_dropped_beyond_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ratelimit, "MAX_LOCAL_KEYS", 10)
    limiter = RateLimiter(Settings(rate_limit_per_key=1000))
    for number in range(25):
        await limiter.check(f"key_{number}")
    assert len(limiter._buckets) <= 10
