"""Outbound HTTP on a workflow's behalf (http nodes, image and file URL inputs), SSRF-guarded."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from flowport.errors import InvalidArgument, UpstreamFailed
from flowport.settings import Settings

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Headers that must not follow a redirect to another origin.
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
# Sending one of these twice does no more than sending it once (RFC 9110, 9.2.2).
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
# Hosts whose checked addresses a resolver holds; each is set again before every request.
_CHECKED_HOSTS = 1024


class ConnectionFailed(UpstreamFailed):
    """No answer came: the host refused or dropped the connection. Nothing was processed, so
    retrying an idempotent request is safe."""


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    """The service-wide limits of outbound requests, from Settings."""

    # Host names, IPs or CIDRs that may be reached although they are not public.
    allow: tuple[str, ...] = ()
    max_bytes: int = 5_242_880
    timeout_s: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchPolicy:
        return cls(
            allow=tuple(settings.fetch_allow),
            max_bytes=settings.fetch_max_bytes,
            timeout_s=settings.fetch_timeout_s,
        )


@dataclass(frozen=True, slots=True)
class FetchedResponse:
    url: str  # the last URL, after redirects
    status: int
    reason: str
    # Lower-case names; repeated headers joined with ", ".
    headers: dict[str, str]
    content: bytes

    @property
    def text(self) -> str:
        charset = _content_type_params(self.headers).get("charset", "utf-8")
        try:
            return self.content.decode(charset, errors="replace")
        except LookupError:  # a charset Python does not know
            return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any | None:
        """The parsed body when the server labels it JSON and it parses, else None."""
        media_type = self.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type != "application/json" and not media_type.endswith("+json"):
            return None
        try:
            return json.loads(self.text)
        except ValueError:
            return None


async def check_url(url: str, *, allow: Sequence[str]) -> None:
    """Raises InvalidArgument unless `url` is http(s) and its host resolves only to public
    addresses, or the host, or an IP/CIDR covering each of its addresses, is in `allow`."""
    await _checked_addresses(_parse(url), allow)


class Outbound:
    """Outbound HTTP under one FetchPolicy (a service's http nodes and fetched files).

    Idempotent requests share kept-alive connections, so an API called on every run costs
    no new TCP and TLS handshake each time. A kept connection may have been closed by the
    server meanwhile; aiohttp then sends the request again on a new one, which only an
    idempotent request allows. The others (POST, PATCH) always get a new connection.

    Sessions are made on first use (in the event loop) and closed by `aclose`."""

    def __init__(self, policy: FetchPolicy | None = None) -> None:
        self.policy = policy or FetchPolicy()
        self._resolver = _CheckedResolver()
        # By whether their connections are kept: True for idempotent requests.
        self._sessions: dict[bool, aiohttp.ClientSession] = {}

    async def __aenter__(self) -> Outbound:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()

    async def check_url(self, url: str) -> None:
        """`check_url` under this client's allow-list."""
        await check_url(url, allow=self.policy.allow)

    async def fetch(
        self,
        url: str,
        *,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        content: bytes | str | None = None,
        timeout_s: float | None = None,
        follow_redirects: bool = True,
    ) -> FetchedResponse:
        """One request through the guard, whatever its status. Every hop (redirects
        included) is checked, and the connection goes to an address that was checked, so a
        DNS answer that changes between check and connect (rebinding) cannot reach a private
        address.

        Raises InvalidArgument (refused URL, body over the policy's `max_bytes`),
        ConnectionFailed, or UpstreamFailed (timed out after `timeout_s`, by default the
        policy's, which bounds the whole exchange).
        """
        timeout_s = self.policy.timeout_s if timeout_s is None else timeout_s
        target = _parse(url)
        shown = f"{method} {_display(target)}"
        # The Host header always names the URL's host: the one that was checked.
        sent = {name: value for name, value in (headers or {}).items() if name.lower() != "host"}
        try:
            async with asyncio.timeout(timeout_s):
                return await self._fetch(
                    target,
                    method=method,
                    headers=sent,
                    content=content.encode() if isinstance(content, str) else content,
                    follow_redirects=follow_redirects,
                )
        except TimeoutError:
            raise UpstreamFailed(f"{shown}: timed out after {timeout_s:g}s") from None

    def _session(self, method: str) -> aiohttp.ClientSession:
        keep = method in IDEMPOTENT
        session = self._sessions.get(keep)
        if session is None:
            # aiohttp's TLS context is built once per process (httpx built one per client,
            # on the event loop). trust_env stays off: a proxy from the
            # environment would connect on our behalf and bypass the address check.
            connector = aiohttp.TCPConnector(
                resolver=self._resolver, use_dns_cache=False, limit=0, force_close=not keep
            )
            session = aiohttp.ClientSession(connector=connector)
            self._sessions[keep] = session
        return session

    async def _fetch(
        self,
        url: URL,
        *,
        method: str,
        headers: dict[str, str],
        content: bytes | None,
        follow_redirects: bool,
    ) -> FetchedResponse:
        # Redirects are followed here, not by aiohttp, so that every hop is checked.
        for _ in range(MAX_REDIRECTS + 1):
            self._resolver.remember(url, await _checked_addresses(url, self.policy.allow))
            shown = f"{method} {_display(url)}"
            try:
                response = await self._session(method).request(
                    method,
                    url,
                    headers=headers,
                    data=content,
                    allow_redirects=False,
                    # A body is sent as given: no Content-Type unless the caller set one.
                    skip_auto_headers=("Content-Type",),
                )
            except aiohttp.ClientError as exc:
                raise ConnectionFailed(
                    f"{shown}: could not connect ({type(exc).__name__})"
                ) from None
            async with response:
                hop = _redirect(url, response, method) if follow_redirects else None
                if hop is not None:
                    next_url, next_method, keeps_body = hop
                    if not keeps_body:
                        content = None
                    if _origin(next_url) != _origin(url):
                        headers = {
                            k: v for k, v in headers.items() if k.lower() not in _CREDENTIAL_HEADERS
                        }
                    url, method = next_url, next_method
                    continue
                try:
                    body = await _read_at_most(response, self.policy.max_bytes, shown)
                except aiohttp.ClientError as exc:
                    raise UpstreamFailed(
                        f"{shown}: the connection broke ({type(exc).__name__})"
                    ) from None
                return FetchedResponse(
                    url=str(url),
                    status=response.status,
                    reason=response.reason or "",
                    headers=_joined_headers(response.headers.items()),
                    content=body,
                )
        raise UpstreamFailed(f"{method} {_display(url)}: more than {MAX_REDIRECTS} redirects")


class _CheckedResolver(AbstractResolver):
    """Name resolution for an Outbound's new connections: only the addresses the guard
    checked for the host, just before the request, so the socket goes where the check
    looked. (aiohttp asks no resolver for an IP literal; the guard checked that address.)

    Concurrent requests to one host may each set its addresses: every set was checked under
    the same allow-list. A kept-alive connection went to an address checked when it opened."""

    def __init__(self) -> None:
        self._checked: dict[str, list[IpAddress]] = {}

    def remember(self, url: URL, addresses: list[IpAddress]) -> None:
        """The addresses checked for the URL's host, which its next connections go to."""
        host = (url.raw_host or "").lower()
        self._checked.pop(host, None)
        self._checked[host] = addresses
        if len(self._checked) > _CHECKED_HOSTS:
            del self._checked[next(iter(self._checked))]  # the host set longest ago

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = self._checked.get(host.lower())
        if not addresses:
            raise OSError(f"{host} was not checked")  # never reached: every hop is checked
        return [
            ResolveResult(
                hostname=host,
                host=str(address),
                port=port,
                family=socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        pass


async def _read_at_most(response: aiohttp.ClientResponse, max_bytes: int, shown: str) -> bytes:
    too_large = InvalidArgument(f"{shown}: response larger than {max_bytes} bytes")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    # Decoded bytes are counted, so a small gzip bomb is stopped too.
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _redirect(
    url: URL, response: aiohttp.ClientResponse, method: str
) -> tuple[URL, str, bool] | None:
    """Where a redirect sends the request next, with which method, and whether the body goes
    too; None if the response is no redirect."""
    location = response.headers.get("location")
    if response.status not in _REDIRECT_STATUSES or not location:
        return None
    try:
        next_url = str(url.join(URL(location.strip())))
    except (ValueError, TypeError):
        next_url = location
    # As browsers do: 303, and 301/302 after a POST, continue as a GET without the body.
    if response.status == 303 or (response.status in (301, 302) and method == "POST"):
        return _parse(next_url), "GET" if method != "HEAD" else method, False
    return _parse(next_url), method, True


def _origin(url: URL) -> tuple[str, str | None]:
    return url.scheme, url.host_port_subcomponent


def _joined_headers(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-case names; a header sent more than once has its values joined with ", "."""
    joined: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        joined[key] = f"{joined[key]}, {value}" if key in joined else value
    return joined


# A host name as DNS spells it once IDNA-encoded (underscores occur in real names too).
_HOST_NAME = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?")


def _parse(url: str) -> URL:
    try:
        parsed = URL(url.strip())
        host = parsed.raw_host
    except (ValueError, TypeError, UnicodeError):
        raise InvalidArgument(f"{_short(url)}: not a valid URL") from None
    if parsed.scheme not in ("http", "https"):
        raise InvalidArgument(f"{_short(url)}: only http and https URLs may be fetched")
    if not host:
        raise InvalidArgument(f"{_short(url)}: the URL has no host")
    if not is_ip(host) and not _HOST_NAME.fullmatch(host.lower()):
        raise InvalidArgument(f"{_short(url)}: not a valid URL")
    return parsed


def is_ip(host: str) -> bool:
    """Whether `host` is an IPv4 or IPv6 address rather than a name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _checked_addresses(url: URL, allow: Sequence[str]) -> list[IpAddress]:
    """The host's addresses, each checked: the request may go to any of them."""
    host = (url.raw_host or "").lower()
    names, networks = _allow_rules(allow)
    addresses = await _resolve(host, url.port or (443 if url.scheme == "https" else 80))
    if host in names:
        return addresses
    for address in addresses:
        if any(address in network for network in networks):
            continue
        kind = _non_public_kind(address)
        if kind is not None:
            where = host if host == str(address) else f"{host} resolves to {address}, which"
            raise InvalidArgument(
                f"{_display(url)}: refused: {where} is a {kind} address"
                " and not in the service's allow-list"
            )
    return addresses


async def _resolve(host: str, port: int) -> list[IpAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise InvalidArgument(f"cannot resolve host {host!r}") from None
    # sockaddr[0] is the address; an IPv6 one may carry a %scope, which ip_address takes.
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    if not addresses:
        raise InvalidArgument(f"cannot resolve host {host!r}")
    return addresses


def _non_public_kind(address: IpAddress) -> str | None:
    """What kind of non-public address this is, or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    # The order matters: 127.0.0.1 and 169.254.169.254 are "private" too, but these say more.
    for kind in ("unspecified", "loopback", "link_local", "multicast", "reserved", "private"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    if not address.is_global:  # shared (100.64/10), documentation ranges and the like
        return "non-public"
    return None


def _allow_rules(allow: Sequence[str]) -> tuple[set[str], list[IpNetwork]]:
    names: set[str] = set()
    networks: list[IpNetwork] = []
    for entry in allow:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            names.add(entry.strip().lower())
    return names, networks


def _content_type_params(headers: Mapping[str, str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for part in headers.get("content-type", "").split(";")[1:]:
        name, _, value = part.partition("=")
        params[name.strip().lower()] = value.strip().strip('"')
    return params


def _display(url: URL) -> str:
    """The URL without its query and credentials: those may hold secrets."""
    return f"{url.scheme}://{url.host_port_subcomponent or ''}{url.path}"


def redacted(url: str) -> str:
    """`url` fit for messages and records: no query, no credentials."""
    try:
        return _display(URL(url.strip()))
    except (ValueError, TypeError, UnicodeError):
        return _short(url)


def _short(text: str) -> str:
    return repr(text) if len(text) <= 60 else repr(text[:57] + "...")
