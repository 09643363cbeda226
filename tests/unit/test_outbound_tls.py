"""Outbound TLS: the connection goes to a checked address, yet the certificate is verified
against the URL's host name, which is also the SNI name and the Host header.

The fetch runs in a child process whose trust store is a throwaway CA (SSL_CERT_FILE, read
when the default TLS context is built), as an operator would trust a private CA."""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme
from aiohttp import web

from tests.integration.stack import REPO

FETCH = """
import asyncio, json, sys
from flowport.errors import FlowportError
from flowport.outbound import FetchPolicy, Outbound

async def main():
    try:
        async with Outbound(FetchPolicy(allow=("localhost",), timeout_s=5)) as client:
            answer = await client.fetch(sys.argv[1])
        print(json.dumps({"status": answer.status, "text": answer.text}))
    except FlowportError as error:
        print(json.dumps({"error": type(error).__name__, "message": error.message}))

asyncio.run(main())
"""


@dataclass
class TlsServer:
    port: int
    sni_names: list[str | None] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@asynccontextmanager
async def serve_tls(cert: trustme.LeafCert) -> AsyncIterator[TlsServer]:
    server = TlsServer(port=0)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    context.sni_callback = lambda _socket, name, _context: server.sni_names.append(name)

    async def hello(request: web.Request) -> web.Response:
        server.hosts.append(request.headers["Host"])
        return web.Response(text="hello over TLS")

    app = web.Application()
    app.router.add_get("/hello", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    server.port = runner.addresses[0][1]
    try:
        yield server
    finally:
        await runner.cleanup()


async def fetch_in_child(url: str, trusted: Path) -> dict[str, object]:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        FETCH,
        url,
        cwd=REPO,
        env={"SSL_CERT_FILE": str(trusted), "PYTHONPATH": str(REPO / "services")},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await child.communicate()
    assert child.returncode == 0, err.decode()
    return json.loads(out)


async def test_a_trusted_certificate_for_the_host_is_accepted(
    ca: trustme.CA, tmp_path: Path
) -> None:
    trusted = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(trusted))
    async with serve_tls(ca.issue_cert("localhost")) as server:
        answer = await fetch_in_child(f"https://localhost:{server.port}/hello", trusted)
        assert answer == {"status": 200, "text": "hello over TLS"}
        # The socket went to the address checked for localhost; TLS and HTTP name the host.
        assert server.sni_names == ["localhost"]
        assert server.hosts == [f"localhost:{server.port}"]


async def test_a_certificate_for_another_name_is_refused(ca: trustme.CA, tmp_path: Path) -> None:
    trusted = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(trusted))
    async with serve_tls(ca.issue_cert("api.example.org")) as server:
        answer = await fetch_in_child(f"https://localhost:{server.port}/hello", trusted)
        assert answer["error"] == "ConnectionFailed"
        assert "could not connect (ClientConnectorCertificateError)" in str(answer["message"])
        assert server.hosts == []


async def test_a_certificate_from_an_untrusted_ca_is_refused(
    ca: trustme.CA, tmp_path: Path
) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    async with serve_tls(ca.issue_cert("localhost")) as server:
        answer = await fetch_in_child(f"https://localhost:{server.port}/hello", other)
        assert answer["error"] == "ConnectionFailed"
        assert "ClientConnectorCertificateError" in str(answer["message"])
        assert server.hosts == []
