"""The one cache of things read from the database on the hot path (API keys, published
workflows): bounded, trusted for a short time, loaded once however many callers miss at
once, and dropped on the spot when a replica says it changed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class _Entry(Generic[V]):
    value: V
    expires: float


class LoadingCache(Generic[K, V]):
    """`get(key, load)` answers from the cache while the entry is younger than `ttl_s`, else
    from `load()`; callers missing one key together share one load (shielded: one caller
    going away does not cancel the others'). `invalidate` drops entries; a load that
    overlapped an invalidation is answered once and not kept, so a stale read never
    outlives the change that made it stale. Past `max_entries` the cache starts over, so
    unknown keys cannot grow it. A value of None is answered but never kept."""

    def __init__(
        self,
        *,
        ttl_s: float,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[K, _Entry[V]] = {}
        self._loading: dict[K, asyncio.Future[V]] = {}
        # Counts invalidations: a load that saw one change is used once, never kept.
        self._generation = 0

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        entry = self._entries.get(key)
        if entry is not None and entry.expires > self._clock():
            return entry.value
        loading = self._loading.get(key)
        if loading is None:
            loading = asyncio.ensure_future(self._load_and_keep(key, load))
            self._loading[key] = loading
            loading.add_done_callback(lambda done: self._loaded(key, done))
        return await asyncio.shield(loading)

    def invalidate(self, key: K) -> None:
        self._generation += 1
        self._entries.pop(key, None)
        self._loading.pop(key, None)

    def invalidate_where(self, stale: Callable[[V], bool]) -> None:
        """Drops every entry whose value is `stale`, and every load in flight."""
        self._generation += 1
        self._entries = {k: e for k, e in self._entries.items() if not stale(e.value)}
        self._loading.clear()

    async def _load_and_keep(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        generation = self._generation
        expires = self._clock() + self._ttl_s
        value = await load()
        if value is not None and generation == self._generation:
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
            self._entries[key] = _Entry(value, expires)
        return value

    def _loaded(self, key: K, done: asyncio.Future[V]) -> None:
        # Only this load's own entry: an invalidation may have replaced it since.
        if self._loading.get(key) is done:
            del self._loading[key]
