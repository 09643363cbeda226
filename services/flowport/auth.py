"""Who is calling: API keys from request metadata to a principal with scopes."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from flowport.errors import MissingScope, Unauthenticated
from flowport.storage import Database, find_api_key, touch_api_key

SCOPES = ("admin", "run")
# last_used_at is written at most this often per key, so a busy key does not cost
# a database write on every call.
LAST_USED_RESOLUTION_S = 60.0


@dataclass(frozen=True, slots=True)
class Principal:
    account_id: str
    key_id: str
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise MissingScope(f"this API key lacks the {scope} scope")


def key_from_metadata(metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
    """The key from `x-api-key: <key>` or `authorization: Bearer <key>` (API.md, Credentials)."""
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
    def __init__(self, db: Database) -> None:
        self._db = db
        self._last_touched: dict[str, float] = {}

    async def authenticate(self, secret: str | None) -> Principal:
        if not secret:
            raise Unauthenticated(
                "missing API key: send `X-API-KEY: <key>` or `Authorization: Bearer <key>`"
            )
        key = await self._db.run(lambda session: find_api_key(session, secret=secret))
        if key is None or key.revoked:
            # One message for unknown and revoked keys: it tells an attacker nothing.
            raise Unauthenticated("invalid API key")
        now = time.monotonic()
        if now - self._last_touched.get(key.id, -LAST_USED_RESOLUTION_S) >= LAST_USED_RESOLUTION_S:
            self._last_touched[key.id] = now
            await self._db.run(lambda session: touch_api_key(session, key_id=key.id))
        return Principal(account_id=key.account_id, key_id=key.id, scopes=frozenset(key.scopes))
