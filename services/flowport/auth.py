"""Who is calling: API keys from request metadata to a principal with scopes."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from flowport.cache import LoadingCache
from flowport.errors import KeyExpired, MissingScope, Unauthenticated, WorkflowNotAllowed
from flowport.storage import Database, match_api_key, touch_api_key
from flowport.storage.models import utc_now

SCOPES = ("admin", "run")
# last_used_at is written at most this often per key, so a busy key does not cost
# a database write on every call.
LAST_USED_RESOLUTION_S = 60.0
# A key found in the database is trusted this long without asking again: a key revoked by
# a process that tells no replica (the CLI) is refused within this time.
CACHE_TTL_S = 1.0
# Beyond this many cached keys the cache starts over, so unknown callers cannot grow it.
CACHE_MAX_KEYS = 10_000


@dataclass(frozen=True, slots=True)
class Principal:
    account_id: str
    key_id: str
    scopes: frozenset[str]
    # The workflows the key may run; None: every one its account may.
    workflows: frozenset[str] | None = None
    # When the key expires, and when the secret it was called with stops working (earlier,
    # for a secret a rotation replaced); None: never. Checked on every call, cached or not.
    expires_at: datetime | None = None
    secret_until: datetime | None = None

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise MissingScope(f"this API key lacks the {scope} scope")

    def may_run(self, workflow_id: str) -> None:
        """Refuses a workflow outside the key's list, before anyone looks the workflow up:
        the answer is the same whether it exists or not."""
        if self.workflows is not None and workflow_id not in self.workflows:
            raise WorkflowNotAllowed(f"this API key may not run workflow {workflow_id}")


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


class Authenticator:
    """Keys checked against the database, then trusted for CACHE_TTL_S by their digest. A
    revoked or rotated key is dropped from the cache at once (`forget`): on this replica by
    the call that changed it, on the others by the replicas' channel. Expiry is checked on
    every call against the wall clock (`now`), so a cached key is never served past it."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self._db = db
        self._clock = clock
        self._now = now
        self._last_touched: dict[str, float] = {}
        self._keys: LoadingCache[str, Principal | None] = LoadingCache(
            ttl_s=CACHE_TTL_S, max_entries=CACHE_MAX_KEYS, clock=clock
        )

    async def authenticate(self, secret: str | None) -> Principal:
        if not secret:
            raise Unauthenticated(
                "missing API key: send `X-API-KEY: <key>` or `Authorization: Bearer <key>`"
            )
        digest = hashlib.sha256(secret.encode()).hexdigest()
        principal = await self._keys.get(digest, lambda: self._lookup(secret))
        if principal is None:
            # One message for unknown and revoked keys: it tells an attacker nothing.
            raise Unauthenticated("invalid API key")
        if principal.expires_at is not None or principal.secret_until is not None:
            wall = self._now()
            if principal.expires_at is not None and principal.expires_at <= wall:
                raise KeyExpired("API key expired")
            if principal.secret_until is not None and principal.secret_until <= wall:
                # A rotated-out secret past its grace: what a fresh lookup answers too.
                raise Unauthenticated("invalid API key")
        key_id = principal.key_id
        now = self._clock()
        if now - self._last_touched.get(key_id, -LAST_USED_RESOLUTION_S) >= LAST_USED_RESOLUTION_S:
            self._last_touched[key_id] = now
            await self._db.run(lambda session: touch_api_key(session, key_id=key_id))
        return principal

    def forget(self, key_id: str) -> None:
        """The key was revoked or rotated: looked up afresh from the next call on."""
        self._keys.invalidate_where(
            lambda principal: principal is not None and principal.key_id == key_id
        )

    async def _lookup(self, secret: str) -> Principal | None:
        match = await self._db.run(lambda session: match_api_key(session, secret=secret))
        if match is None or match.key.revoked:
            return None
        key = match.key
        return Principal(
            account_id=key.account_id,
            key_id=key.id,
            scopes=frozenset(key.scopes),
            workflows=None if key.workflows is None else frozenset(key.workflows),
            expires_at=key.expires_at,
            secret_until=match.valid_until,
        )
