"""`flowport serve --workers 2`: two service processes behind one Envoy, both serving runs,
and SIGTERM stops every one of them."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flowport.demo import BMI
from tests.bench import procs
from tests.integration.client import Api
from tests.integration.stack import Stack


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(
        data_dir=tmp_path / "stack",
        database_url=f"sqlite:///{tmp_path / 'flowport.db'}",
        llm_base_url=None,
        workers=2,
    )
    stack.start()
    yield stack
    stack.stop()


def _requests_per_worker(stack: Stack) -> dict[str, int]:
    """Envoy's count of requests sent to each service process (its admin /clusters page)."""
    page = httpx.get(f"http://127.0.0.1:{stack.admin_port}/clusters", timeout=5).text
    counts = re.findall(r"^flowport_grpc::([\d.]+:\d+)::rq_total::(\d+)$", page, re.MULTILINE)
    return {address: int(total) for address, total in counts}


def test_two_workers_both_serve_runs_and_sigterm_stops_them_all(two_workers: Stack) -> None:
    assert two_workers.process is not None
    workers = [
        pid
        for pid in procs.descendants(two_workers.process.pid)
        if procs.command_name(pid) != "envoy"
    ]
    assert len(workers) == 2, workers
    _, key = two_workers.create_key()
    with Api(two_workers.base_url, key) as api:
        workflow_id = api.publish(BMI)
        for _ in range(10):
            response = api.run(workflow_id, {"height": 2, "weight": 80})
            assert response.json()["output"] == "您的BMI值是20.0"

    counts = _requests_per_worker(two_workers)
    ports = {f"127.0.0.1:{two_workers.grpc_port}", f"127.0.0.1:{two_workers.grpc_port + 1}"}
    assert set(counts) == ports
    # Round robin: both processes took part of the 12 calls.
    assert all(count > 0 for count in counts.values()), counts

    everything = [two_workers.process.pid, *procs.descendants(two_workers.process.pid)]
    two_workers.process.send_signal(signal.SIGTERM)
    assert two_workers.process.wait(timeout=30) == 0
    assert not [pid for pid in everything if Path(f"/proc/{pid}").exists()]
