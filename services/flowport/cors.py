"""Browsers' cross-origin calls (CORS): each account lists the origins whose pages may call with
its keys. Envoy's CORS filter answers preflights (which carry no key) from the union of every
account's list, in the routes.yaml this module keeps written; the service then holds each call
to its own account's list, from the `x-flowport-origin` header the Lua filter sets only on
cross-origin calls (envoy/flowport.lua)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterable, Sequence

from flowport.cache import LoadingCache
from flowport.errors import InvalidArgument, OriginNotAllowed
from flowport.storage import Database, all_allowed_origins, get_account

log = logging.getLogger(__name__)

# Set by the Lua filter, and only there: it drops any a client sends.
ORIGIN_HEADER = "x-flowport-origin"
MAX_ORIGINS = 100
# An account's list is trusted this long; a change made on any replica reaches the others at
# once through the replicas' channel, and this bounds it when the channel fails.
CACHE_TTL_S = 5.0
_ORIGIN = re.compile(
    r"(?P<scheme>https?)://(?P<host>[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*"
    r"|\[[0-9a-f:.]+\])(:(?P<port>[0-9]{1,5}))?"
)
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def parse_origin(text: str) -> str:
    """`text` as a browser sends it in `Origin`: scheme://host[:port], lower case, without the
    scheme's default port. Anything else (a path, `*`, a wildcard host) is refused by name."""
    value = text.strip().lower()
    match = _ORIGIN.fullmatch(value)
    if match is None:
        raise InvalidArgument.at(
            "allowed_origins",
            f"{text!r} is not an origin: scheme://host[:port] with scheme http or https, "
            "no path, no wildcard",
        )
    port = match["port"]
    if port is not None and not 0 < int(port) < 65536:
        raise InvalidArgument.at("allowed_origins", f"{text!r} has no valid port")
    if port is not None and _DEFAULT_PORTS[match["scheme"]] == port:
        return f"{match['scheme']}://{match['host']}"
    return value


def parse_origins(values: Iterable[str]) -> list[str]:
    """The list as stored: each origin normalised (parse_origin), once, in the order given."""
    origins = list(dict.fromkeys(parse_origin(value) for value in values))
    if len(origins) > MAX_ORIGINS:
        raise InvalidArgument.at(
            "allowed_origins", f"at most {MAX_ORIGINS} origins per account, not {len(origins)}"
        )
    return origins


class Origins:
    """The accounts' allowed origins: checked on every cross-origin call, and, when this
    process owns an Envoy (`write_routes`), kept in that Envoy's routes."""

    def __init__(
        self, db: Database, *, write_routes: Callable[[Sequence[str]], bool] | None = None
    ) -> None:
        self._db = db
        self._write_routes = write_routes
        self._writing = asyncio.Lock()
        self._lists: LoadingCache[str, frozenset[str]] = LoadingCache(ttl_s=CACHE_TTL_S)

    async def check(self, account_id: str, origin: str) -> None:
        """Refuses a cross-origin call from an origin the account does not list."""
        allowed = await self._lists.get(account_id, lambda: self._load(account_id))
        if origin.lower() not in allowed:
            raise OriginNotAllowed(
                f"origin {origin} is not allowed for this account: add it with PUT /v1/account/cors"
            )

    async def changed(self, account_id: str) -> None:
        """The account's list changed (here, or on another replica): read afresh, and the
        routes of this process's Envoy follow."""
        self._lists.invalidate(account_id)
        await self.write_routes()

    async def write_routes(self) -> None:
        """Writes the routes for every account's origins, when this process owns an Envoy and
        they changed; at start, on each change, and on each beat in case a message was lost."""
        if self._write_routes is None:
            return
        async with self._writing:
            origins = await self._db.run(all_allowed_origins)
            write = self._write_routes
            if await asyncio.to_thread(write, origins):
                log.debug("Envoy's CORS policy now allows %d origins", len(origins))

    async def _load(self, account_id: str) -> frozenset[str]:
        account = await self._db.run(lambda session: get_account(session, account_id=account_id))
        return frozenset(account.allowed_origins)
