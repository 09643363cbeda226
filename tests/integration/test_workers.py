"""`flowport serve --workers 2`: two service processes behind one Envoy, both serving runs,
each a replica of the service: a cancel lands whichever worker it reaches, a key's rate
limit holds for the service, and SIGTERM stops every one of them."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flowport.demo import BMI, CHAT
from tests.bench import procs
from tests.fakes.fake_llm import FakeLlm
from tests.integration import transitions
from tests.integration.client import Api
from tests.integration.stack import Stack

# FLOWPORT_RATE_LIMIT_PER_KEY's default.
RATE_LIMIT = 20


@pytest.fixture
def two_workers(
    request: pytest.FixtureRequest, tmp_path: Path, fake_llm_server: FakeLlm
) -> Iterator[Stack]:
    database = f"sqlite:///{tmp_path / 'flowport.db'}"
    transitions.install(database)
    stack = Stack(
        data_dir=tmp_path / "stack",
        database_url=database,
        llm_base_url=fake_llm_server.base_url,
        workers=2,
        # A test that is not about the rate limit raises it (indirect parametrize), so a
        # fast machine's loop of calls never meets it.
        extra_env=getattr(request, "param", {}),
    )
    stack.start()
    yield stack
    stack.stop()
    assert transitions.backwards(database) == []


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


@pytest.mark.parametrize(
    "two_workers", [{"FLOWPORT_RATE_LIMIT_PER_KEY": "1000"}], indirect=True, ids=["unlimited"]
)
def test_a_cancel_lands_whichever_worker_it_reaches(two_workers: Stack, fake_llm: FakeLlm) -> None:
    _, key = two_workers.create_key()
    fake_llm.set_reply(tokens=["a", "b"], pause_after=1)
    with Api(two_workers.base_url, key) as api:
        workflow_id = api.publish(CHAT)
        outcomes = []
        for _ in range(20):
            with api.stream(workflow_id, {"输入": "hi"}) as source:
                run_id = source.response.headers["x-run-id"]
                frames = []
                for sse in source.iter_sse():
                    frames.append(sse.event)
                    if sse.event == "stream":
                        # A new connection: Envoy sends it to either worker.
                        with Api(two_workers.base_url, key) as other:
                            cancelled = other.post(f"/v1/runs/{run_id}:cancel", {})
                        assert cancelled.status_code == 200, cancelled.text
            outcomes.append((cancelled.json()["status"], frames[-1]))
            assert api.get(f"/v1/runs/{run_id}").json()["status"] == "cancelled"

    assert outcomes == [("cancelled", "error")] * 20


def test_a_keys_rate_limit_holds_for_the_service_not_per_worker(two_workers: Stack) -> None:
    _, key = two_workers.create_key()
    with Api(two_workers.base_url, key) as api:
        # Three times the limit as fast as one client goes, spread over both workers by
        # Envoy's round robin.
        began = time.monotonic()
        codes = [api.get("/v1/runs/run_none").status_code for _ in range(RATE_LIMIT * 3)]
        elapsed = time.monotonic() - began

    # What one limiter lets through: a burst of the limit, then the limit a second. Two
    # limiters of the whole limit each would have let through twice as many.
    allowed = RATE_LIMIT * (1 + elapsed)
    assert codes.count(404) <= allowed + 1, (codes, elapsed)
    assert codes.count(429) >= RATE_LIMIT * 3 - allowed - 1, (codes, elapsed)
