"""The SSRF guard and the guarded fetch, against a real local HTTP server."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from flowport.errors import InvalidArgument, UpstreamFailed
from flowport.outbound import (
    ConnectionFailed,
    FetchedResponse,
    FetchPolicy,
    Outbound,
    check_url,
)
from flowport.settings import Settings
from tests.fakes.fake_http import FakeHttp
from tests.integration.stack import REPO

LOCAL = ["127.0.0.1"]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeHttp]:
    with FakeHttp() as fake:
        yield fake


@pytest.fixture
def http(server: FakeHttp) -> Iterator[FakeHttp]:
    server.reset()
    yield server
    server.reset()


async def fetch(
    url: str, *, timeout_s: float, max_bytes: int, allow: Sequence[str], **request: Any
) -> FetchedResponse:
    """One request through a client of its own, closed after it."""
    policy = FetchPolicy(allow=tuple(allow), max_bytes=max_bytes, timeout_s=timeout_s)
    async with Outbound(policy) as client:
        return await client.fetch(url, **request)


async def get(
    url: str, *, allow: Sequence[str] = LOCAL, max_bytes: int = 1_000_000, timeout_s: float = 5
) -> FetchedResponse:
    return await fetch(url, timeout_s=timeout_s, max_bytes=max_bytes, allow=allow)


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1:9/x", "127.0.0.1 is a loopback address"),
        ("http://10.1.2.3/", "10.1.2.3 is a private address"),
        ("http://192.168.0.1/", "private address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://[::1]:8080/", "::1 is a loopback address"),
        ("http://[::ffff:127.0.0.1]/", "loopback address"),
        ("http://0.0.0.0/", "unspecified address"),
        ("http://224.0.0.1/", "multicast address"),
        ("http://100.64.0.1/", "non-public address"),
        ("https://localhost/", "localhost resolves to"),
    ],
)
async def test_non_public_addresses_are_refused_without_the_allow_list(url: str, kind: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        await check_url(url, allow=[])
    assert kind in refused.value.message
    assert "refused" in refused.value.message


async def test_localhost_is_refused_as_loopback() -> None:
    with pytest.raises(InvalidArgument, match="loopback address"):
        await check_url("http://localhost:8080/admin", allow=[])


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.com/x", "gopher://127.0.0.1/", "javascript:1"]
)
async def test_only_http_and_https_are_fetched(url: str) -> None:
    with pytest.raises(InvalidArgument, match="only http and https URLs may be fetched"):
        await check_url(url, allow=["127.0.0.1", "example.com"])


@pytest.mark.parametrize(
    "url", ["http://exa mple.com/", "http://[::1", "http://example.com:99999/", "http://a..b/"]
)
async def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidArgument, match="not a valid URL"):
        await check_url(url, allow=["127.0.0.1"])


async def test_an_unknown_host_is_refused() -> None:
    with pytest.raises(InvalidArgument, match=r"cannot resolve host 'no-such-host\.invalid'"):
        await check_url("https://no-such-host.invalid/", allow=[])


async def test_public_addresses_and_allowed_ones_pass() -> None:
    await check_url("https://93.184.216.34/path?q=1", allow=[])
    await check_url("http://10.1.2.3/", allow=["10.0.0.0/8"])
    await check_url("http://[::1]/", allow=["::1"])
    await check_url("http://localhost/", allow=["LOCALHOST"])


async def test_a_refused_url_is_never_requested(http: FakeHttp) -> None:
    with pytest.raises(InvalidArgument, match="loopback"):
        await get(http.url("/echo"), allow=[])
    assert http.requests == []


async def test_fetch_sends_method_headers_and_body_and_reads_json(http: FakeHttp) -> None:
    response = await fetch(
        http.url("/echo?a=1"),
        method="PUT",
        headers={"X-Token": "t1", "Content-Type": "application/json"},
        content='{"k": "v"}',
        timeout_s=5,
        max_bytes=10_000,
        allow=LOCAL,
    )
    assert response.status == 200
    body = response.json()
    assert body["method"] == "PUT" and body["query"] == {"a": "1"} and body["body"] == '{"k": "v"}'
    assert body["headers"]["x-token"] == "t1"
    # The Host header names the host as written, although the socket went to its address.
    assert body["headers"]["host"] == f"127.0.0.1:{http.port}"
    assert response.headers["content-type"].startswith("application/json")


async def test_non_json_bodies_have_text_and_no_json(http: FakeHttp) -> None:
    response = await get(http.url("/text"))
    assert response.text == "plain text" and response.json() is None


async def test_redirects_are_followed_and_every_hop_is_checked(http: FakeHttp) -> None:
    followed = await get(http.url("/redirect?to=/echo"))
    assert followed.status == 200 and followed.url.endswith("/echo")
    with pytest.raises(InvalidArgument, match=r"169\.254\.169\.254 is a link-local address"):
        await get(http.url("/redirect?to=http://169.254.169.254/latest/meta-data/"))


async def test_a_post_redirected_by_302_continues_as_a_get_without_its_body(
    http: FakeHttp,
) -> None:
    answer = await fetch(
        http.url("/redirect?to=/echo"),
        method="POST",
        content="secret form",
        timeout_s=5,
        max_bytes=10_000,
        allow=LOCAL,
    )
    echoed = answer.json() or {}
    assert echoed["method"] == "GET" and echoed["body"] == ""
    assert [seen.method for seen in http.requests] == ["POST", "GET"]


async def test_credentials_do_not_follow_a_redirect_to_another_origin(http: FakeHttp) -> None:
    credentials = {"Authorization": "Bearer s3cret", "Cookie": "id=1", "X-Trace": "t"}
    # Same origin: the credentials go along.
    same = await fetch(
        http.url("/redirect?to=/echo"),
        headers=credentials,
        timeout_s=5,
        max_bytes=10_000,
        allow=LOCAL,
    )
    assert (same.json() or {})["headers"]["authorization"] == "Bearer s3cret"
    # localhost is another origin than 127.0.0.1, though the same server.
    elsewhere = f"http://localhost:{http.port}/echo"
    other = await fetch(
        http.url(f"/redirect?to={elsewhere}"),
        headers=credentials,
        timeout_s=5,
        max_bytes=10_000,
        allow=[*LOCAL, "localhost"],
    )
    seen = (other.json() or {})["headers"]
    assert "authorization" not in seen and "cookie" not in seen
    assert seen["x-trace"] == "t" and seen["host"] == f"localhost:{http.port}"


async def test_a_body_over_the_limit_is_refused(http: FakeHttp) -> None:
    with pytest.raises(InvalidArgument, match="response larger than 1000 bytes"):
        await get(http.url("/big/5000"), max_bytes=1000)
    small = await get(http.url("/big/1000"), max_bytes=1000)
    assert small.content == b"x" * 1000


async def test_a_slow_server_times_out(http: FakeHttp) -> None:
    with pytest.raises(
        UpstreamFailed, match=r"GET http://127\.0\.0\.1:\d+/hang: timed out after 0\.2s$"
    ):
        await get(http.url("/hang?secret=1"), timeout_s=0.2)


async def test_a_closed_port_is_a_connection_failure() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConnectionFailed, match="could not connect"):
        await get(f"http://127.0.0.1:{port}/")


async def test_idempotent_fetches_keep_their_connection_and_others_do_not(
    http: FakeHttp,
) -> None:
    async with Outbound(FetchPolicy(allow=tuple(LOCAL))) as client:
        for method in ("GET", "PUT", "POST", "POST", "GET", "PATCH"):
            answer = await client.fetch(http.url("/echo"), method=method, content="x")
            assert answer.status == 200
    ports = {seen.method: set() for seen in http.requests}
    for seen in http.requests:
        ports[seen.method].add(seen.client_port)
    # GET and PUT came on one connection; each POST and the PATCH on a new one of its own.
    assert ports["GET"] == ports["PUT"] and len(ports["GET"]) == 1
    assert len(ports["POST"]) == 2 and len(ports["POST"] | ports["PATCH"] | ports["GET"]) == 4


async def test_a_kept_connection_the_server_closed_is_replaced(http: FakeHttp) -> None:
    async with Outbound(FetchPolicy(allow=tuple(LOCAL))) as client:
        assert (await client.fetch(http.url("/text"))).text == "plain text"
        # As a server closes idle kept-alive connections after its own timeout.
        http.drop_connections()
        assert (await client.fetch(http.url("/text"))).text == "plain text"
    first, second = http.requests
    assert first.client_port != second.client_port


async def test_the_client_applies_its_policy(http: FakeHttp) -> None:
    async with Outbound(FetchPolicy(allow=tuple(LOCAL), max_bytes=1000)) as client:
        with pytest.raises(InvalidArgument, match="response larger than 1000 bytes"):
            await client.fetch(http.url("/big/5000"))
        await client.check_url(http.url("/echo"))
    async with Outbound(FetchPolicy()) as client:
        with pytest.raises(InvalidArgument, match="loopback"):
            await client.fetch(http.url("/echo"))
        with pytest.raises(InvalidArgument, match="loopback"):
            await client.check_url(http.url("/echo"))


def test_the_policy_comes_from_settings_and_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLOWPORT_FETCH_ALLOW", "127.0.0.1, 10.0.0.0/8,api.internal")
    monkeypatch.setenv("FLOWPORT_FETCH_MAX_BYTES", "1000")
    policy = FetchPolicy.from_settings(Settings())
    assert policy.allow == ("127.0.0.1", "10.0.0.0/8", "api.internal")
    assert policy.max_bytes == 1000 and policy.timeout_s == 10
    monkeypatch.delenv("FLOWPORT_FETCH_ALLOW")
    assert Settings().fetch_allow == []


def test_the_service_loads_one_http_client() -> None:
    """Outbound calls share aiohttp with the LLM client: httpx, which cost the serving
    process ~6 MiB and built a TLS context per fetch, stays out of it."""
    code = (
        "import sys, flowport.cli, flowport.server.app\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} & {'httpx', 'httpcore'})))"
    )
    env = {"PYTHONPATH": str(REPO / "services")}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == ""
