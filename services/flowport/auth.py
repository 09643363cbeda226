"""Who is calling: API keys from request metadata to a principal with scopes."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flowport.errors import MissingScope, Unauthenticated
from flowport.storage import ApiKey, Database, find_api_key, touch_api_key

if TYPE_CHECKING:
    import coredis

SCOPES = ("admin", "run")
# last_used_at is written at most this often per key, so a busy key does not cost
# a database write on every call.
LAST_USED_RESOLUTION_S = 60.0
# A key found in the database is trusted this long without asking again: a key revoked by
# another process (the CLI, a replica without Redis) is refused within this time.
CACHE_TTL_S = 1.0
# Beyond this many cached keys the cache starts over, so unknown callers cannot grow it.
CACHE_MAX_KEYS = 10_000
# Bumped in Redis by every revocation, so replicas sharing Redis drop their cached keys at once.
REDIS_EPOCH_KEY = "flowport:auth:epoch"


@dataclass(frozen=True, slots=True)
class Principal:
    account_id: str
    key_id: str
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise MissingScope(f"this API key lacks the {scope} scope")


def key_from_metadata(metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
    """The key from `x-api-key: <key>` or `authorization: Bearer <key>` (docs/api.md)."""
    bearer = None
    for name, value in metadata:
        if isinstance(value, bytes):
            continue
        if name == "x-api-key" and value.strip():
            return value.strip()
        if name == "authorization":
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                bearer = token.strip()
    return bearer


@dataclass(frozen=True, slots=True)
class _Cached:
    principal: Principal
    expires: float  # time.monotonic()
    epoch: int  # the revocation epoch it was read in (0 without Redis)


class Authenticator:
    """Keys checked against the database, then cached for CACHE_TTL_S by their digest. A key
    revoked through this process is dropped at once (`forget`); with a Redis URL every
    replica sees a revocation on its next call, through a shared epoch."""

    def __init__(
        self,
        db: Database,
        *,
        redis_url: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._clock = clock
        self._last_touched: dict[str, float] = {}
        self._cache: dict[str, _Cached] = {}
        # Lookups in flight by digest: calls that miss the cache together share one.
        self._lookups: dict[str, asyncio.Future[ApiKey | None]] = {}
        # Counts `forget` calls: a lookup that overlapped one is used once, never cached.
        self._forgets = 0
        self._redis: coredis.Redis[bytes] | None = None
        if redis_url:
            # Imported only when used: the client library alone is ~13 MB of every process.
            import coredis

            self._redis = coredis.Redis.from_url(redis_url)

    async def authenticate(self, secret: str | None) -> Principal:
        if not secret:
            raise Unauthenticated(
                "missing API key: send `X-API-KEY: <key>` or `Authorization: Bearer <key>`"
            )
        digest = hashlib.sha256(secret.encode()).hexdigest()
        # Read before the database, so a revocation in between makes this entry stale at once.
        epoch = await self._epoch()
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and cached.expires > now and cached.epoch == epoch:
            principal = cached.principal
        else:
            forgets = self._forgets
            key = await self._lookup(digest, secret)
            if key is None or key.revoked:
                self._cache.pop(digest, None)
                # One message for unknown and revoked keys: it tells an attacker nothing.
                raise Unauthenticated("invalid API key")
            principal = Principal(
                account_id=key.account_id, key_id=key.id, scopes=frozenset(key.scopes)
            )
            if len(self._cache) >= CACHE_MAX_KEYS:
                self._cache.clear()
            if forgets == self._forgets:
                self._cache[digest] = _Cached(principal, now + CACHE_TTL_S, epoch)
        key_id = principal.key_id
        if now - self._last_touched.get(key_id, -LAST_USED_RESOLUTION_S) >= LAST_USED_RESOLUTION_S:
            self._last_touched[key_id] = now
            await self._db.run(lambda session: touch_api_key(session, key_id=key_id))
        return principal

    async def _lookup(self, digest: str, secret: str) -> ApiKey | None:
        lookup = self._lookups.get(digest)
        if lookup is None:
            lookup = asyncio.ensure_future(
                self._db.run(lambda session: find_api_key(session, secret=secret))
            )
            self._lookups[digest] = lookup
            lookup.add_done_callback(lambda done: _discard(self._lookups, digest, done))
        # Shielded: one caller going away must not cancel the others' lookup.
        return await asyncio.shield(lookup)

    async def forget(self, key_id: str) -> None:
        """The key was revoked: refused from the next call on, here and on every replica
        sharing Redis (the others within CACHE_TTL_S)."""
        self._forgets += 1
        self._lookups.clear()
        self._cache = {d: c for d, c in self._cache.items() if c.principal.key_id != key_id}
        if self._redis is not None:
            await self._redis.incr(REDIS_EPOCH_KEY)

    async def _epoch(self) -> int:
        if self._redis is None:
            return 0
        value = await self._redis.get(REDIS_EPOCH_KEY)
        return int(value) if value is not None else 0


def _discard(futures: dict[str, asyncio.Future[ApiKey | None]], key: str, done: object) -> None:
    # Only this lookup's own entry: `forget` may have replaced it since.
    if futures.get(key) is done:
        del futures[key]
