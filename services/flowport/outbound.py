"""Outbound HTTP on a workflow's behalf (http nodes, image and file URL inputs), SSRF-guarded."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from flowport.errors import InvalidArgument, UpstreamFailed
from flowport.settings import Settings

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Headers that must not follow a redirect to another origin.
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


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


async def fetch(
    url: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    content: bytes | str | None = None,
    timeout_s: float,
    max_bytes: int,
    allow: Sequence[str],
    follow_redirects: bool = True,
) -> FetchedResponse:
    """One request through the guard, whatever its status. Every hop (redirects included) is
    checked, and the connection goes to the address that was checked, so a DNS answer that
    changes between check and connect (rebinding) cannot reach a private address.

    Raises InvalidArgument (refused URL, body over `max_bytes`), ConnectionFailed, or
    UpstreamFailed (timed out after `timeout_s`, which bounds the whole exchange).
    """
    target = _parse(url)
    shown = f"{method} {_display(target)}"
    try:
        async with asyncio.timeout(timeout_s):
            return await _fetch(
                target,
                method=method,
                headers=dict(headers or {}),
                content=content.encode() if isinstance(content, str) else content,
                timeout_s=timeout_s,
                max_bytes=max_bytes,
                allow=allow,
                follow_redirects=follow_redirects,
            )
    except (TimeoutError, httpx.TimeoutException):
        raise UpstreamFailed(f"{shown}: timed out after {timeout_s:g}s") from None


async def _fetch(
    url: httpx.URL,
    *,
    method: str,
    headers: dict[str, str],
    content: bytes | None,
    timeout_s: float,
    max_bytes: int,
    allow: Sequence[str],
    follow_redirects: bool,
) -> FetchedResponse:
    # trust_env=False: a proxy from the environment would connect on our behalf and
    # bypass the address check.
    async with httpx.AsyncClient(trust_env=False, timeout=timeout_s) as client:
        for _ in range(MAX_REDIRECTS + 1):
            addresses = await _checked_addresses(url, allow)
            pinned = url.copy_with(host=str(addresses[0]))
            extensions = (
                {"sni_hostname": url.raw_host.decode("ascii")} if url.scheme == "https" else {}
            )
            request = client.build_request(
                method,
                pinned,
                # Host and, for TLS, the SNI name and certificate check stay the original
                # host's, although the socket goes to the checked address.
                headers={**headers, "Host": url.netloc.decode("ascii")},
                content=content,
                extensions=extensions,
            )
            shown = f"{method} {_display(url)}"
            try:
                response = await client.send(request, stream=True)
            except httpx.TimeoutException:
                raise
            except httpx.TransportError as exc:
                raise ConnectionFailed(
                    f"{shown}: could not connect ({type(exc).__name__})"
                ) from None
            try:
                location = response.headers.get("location")
                if follow_redirects and response.status_code in _REDIRECT_STATUSES and location:
                    next_url = _parse(str(url.join(location)))
                    if (next_url.scheme, next_url.netloc) != (url.scheme, url.netloc):
                        headers = {
                            k: v for k, v in headers.items() if k.lower() not in _CREDENTIAL_HEADERS
                        }
                    # As browsers do: 303, and 301/302 after a POST, continue as a GET.
                    if response.status_code == 303 or (
                        response.status_code in (301, 302) and method == "POST"
                    ):
                        method = "GET" if method != "HEAD" else method
                        content = None
                    url = next_url
                    continue
                body = await _read_at_most(response, max_bytes, shown)
                return FetchedResponse(
                    url=str(url),
                    status=response.status_code,
                    reason=response.reason_phrase,
                    headers={name.lower(): value for name, value in response.headers.items()},
                    content=body,
                )
            except httpx.TimeoutException:
                raise
            except httpx.TransportError as exc:
                raise UpstreamFailed(
                    f"{shown}: the connection broke ({type(exc).__name__})"
                ) from None
            finally:
                await response.aclose()
    raise UpstreamFailed(f"{method} {_display(url)}: more than {MAX_REDIRECTS} redirects")


async def _read_at_most(response: httpx.Response, max_bytes: int, shown: str) -> bytes:
    too_large = InvalidArgument(f"{shown}: response larger than {max_bytes} bytes")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    # Decoded bytes are counted, so a small gzip bomb is stopped too.
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError):
        raise InvalidArgument(f"{_short(url)}: not a valid URL") from None
    if parsed.scheme not in ("http", "https"):
        raise InvalidArgument(f"{_short(url)}: only http and https URLs may be fetched")
    if not parsed.host:
        raise InvalidArgument(f"{_short(url)}: the URL has no host")
    return parsed


async def _checked_addresses(url: httpx.URL, allow: Sequence[str]) -> list[IpAddress]:
    """The host's addresses, each checked; the first is where the request goes."""
    host = url.host.lower()
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


def _display(url: httpx.URL) -> str:
    """The URL without its query and credentials: those may hold secrets."""
    return f"{url.scheme}://{url.netloc.decode('ascii')}{url.path}"


def redacted(url: str) -> str:
    """`url` fit for messages and records: no query, no credentials."""
    try:
        return _display(httpx.URL(url.strip()))
    except (httpx.InvalidURL, TypeError):
        return _short(url)


def _short(text: str) -> str:
    return repr(text) if len(text) <= 60 else repr(text[:57] + "...")
