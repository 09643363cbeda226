"""What a container's FLOWPORT_HOST=0.0.0.0 exposes: the public port, and not Envoy's admin
interface nor the metrics port, which stay on loopback unless their own variables say so."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.fake_llm import FakeLlm
from tests.integration.stack import Stack

LISTEN = "0A"


def listening_addresses(port: int) -> set[str]:
    """The addresses sockets of this network namespace listen on at `port`, as the kernel
    lists them (what `ss -ltn` shows)."""
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        path = Path("/proc/net") / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].split(":")
            if fields[3] != LISTEN or int(port_hex, 16) != port:
                continue
            # The kernel prints each 32-bit word of the address in host (little-endian) order.
            raw = bytes.fromhex(address)
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(str(ipaddress.ip_address(socket.inet_ntop(family, words))))
    return found


def _stack(tmp_path: Path, fake_llm: FakeLlm, **env: str) -> Iterator[Stack]:
    stack = Stack(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'flowport.db'}",
        llm_base_url=fake_llm.base_url,
        extra_env=env,
    )
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def exposed(tmp_path: Path, fake_llm_server: FakeLlm) -> Iterator[Stack]:
    yield from _stack(tmp_path, fake_llm_server, FLOWPORT_HOST="0.0.0.0")


def test_an_exposed_public_port_leaves_admin_and_metrics_on_loopback(exposed: Stack) -> None:
    assert listening_addresses(exposed.http_port) == {"0.0.0.0"}
    assert listening_addresses(exposed.admin_port) == {"127.0.0.1"}
    assert listening_addresses(exposed.metrics_port) == {"127.0.0.1"}
    # Both answer there, for the host's own scraper and operator.
    assert httpx.get(f"http://127.0.0.1:{exposed.admin_port}/ready").status_code == 200
    assert httpx.get(exposed.metrics_url).status_code == 200


def test_admin_and_metrics_hosts_are_their_own_variables(
    tmp_path: Path, fake_llm_server: FakeLlm
) -> None:
    for stack in _stack(
        tmp_path,
        fake_llm_server,
        FLOWPORT_ADMIN_HOST="0.0.0.0",
        FLOWPORT_METRICS_HOST="0.0.0.0",
    ):
        assert listening_addresses(stack.http_port) == {"127.0.0.1"}
        assert listening_addresses(stack.admin_port) == {"0.0.0.0"}
        assert listening_addresses(stack.metrics_port) == {"0.0.0.0"}


def test_metrics_port_zero_serves_no_metrics(tmp_path: Path, fake_llm_server: FakeLlm) -> None:
    for stack in _stack(tmp_path, fake_llm_server, FLOWPORT_METRICS_PORT="0"):
        assert listening_addresses(stack.metrics_port) == set()
        assert httpx.get(f"{stack.base_url}/v1/keys").status_code == 401
