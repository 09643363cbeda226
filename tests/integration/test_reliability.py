"""Nothing stuck, nothing lost: cancel calls, crashes, graceful drain, many streams at once,
limits and revocations shared by replicas."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import httpx_sse
import pytest

from flowport.demo import BMI, CHAT
from tests.fakes.fake_llm import FakeLlm
from tests.integration.client import Api
from tests.integration.stack import Stack, wait_for


def test_cancel_call_ends_a_stream_with_an_error_event(api: Api, fake_llm: FakeLlm) -> None:
    fake_llm.set_reply(tokens=["a", "b", "c"], pause_after=1)
    workflow_id = api.publish(CHAT)
    frames = []

    with api.stream(workflow_id, {"输入": "hi"}) as source:
        run_id = source.response.headers["x-run-id"]
        for sse in source.iter_sse():
            frames.append((sse.event, json.loads(sse.data)))
            if sse.event == "stream":
                # From another connection, as any client of the account could.
                with Api(api.http.base_url.__str__(), api.key) as other:
                    cancelled = other.post(f"/v1/runs/{run_id}:cancel", {})
                assert cancelled.status_code == 200, cancelled.text
                assert cancelled.json()["status"] == "cancelled"

    assert frames[-1][0] == "error"
    assert frames[-1][1]["code"] == 499
    assert "cancelled by a cancel request" in frames[-1][1]["message"]
    assert fake_llm.wait_for_disconnect(timeout=5)
    run = api.get(f"/v1/runs/{run_id}").json()
    assert run["status"] == "cancelled"
    assert run["error"] == "the run was cancelled by a cancel request"


def test_cancel_call_ends_a_blocking_run(api: Api, stack: Stack, fake_llm: FakeLlm) -> None:
    fake_llm.set_reply(tokens=["a", "b"], pause_after=1)
    workflow_id = api.publish(CHAT)

    with ThreadPoolExecutor(max_workers=1) as pool:
        blocking = pool.submit(api.run, workflow_id, {"输入": "hi"})
        wait_for(lambda: fake_llm.token_times, what="the LLM to start answering")
        run_id = stack.running_run(workflow_id)
        assert api.post(f"/v1/runs/{run_id}:cancel", {}).json()["status"] == "cancelled"
        answer = blocking.result(timeout=10)

    assert answer.status_code == 499
    assert answer.json() == {"code": 499, "message": "the run was cancelled by a cancel request"}


def test_cancelling_a_finished_run_changes_nothing_and_others_cannot(
    api: Api, stack: Stack
) -> None:
    workflow_id = api.publish(BMI)
    run_id = api.run(workflow_id, {"height": 2, "weight": 80}).json()["run_id"]
    _, other = stack.create_key()

    refused = api.post(f"/v1/runs/{run_id}:cancel", {})
    assert refused.status_code == 409
    assert refused.json()["message"] == "the run already succeeded"
    assert api.get(f"/v1/runs/{run_id}").json()["status"] == "succeeded"
    assert (
        api.post(f"/v1/runs/{run_id}:cancel", {}, headers={"X-API-KEY": other}).status_code == 404
    )


# A short lease, so a killed replica's runs are failed within the test's patience.
LEASE_S = 2.0


@pytest.fixture
def own_stack(tmp_path: Path, fake_llm_server: FakeLlm) -> Iterator[Stack]:
    """A stack of the test's own, for tests that stop, kill or restart it."""
    stack = Stack(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'flowport.db'}",
        llm_base_url=fake_llm_server.base_url,
        extra_env={"FLOWPORT_RUN_LEASE_S": str(LEASE_S)},
    )
    stack.start()
    yield stack
    stack.stop()


def test_runs_cut_by_a_crash_are_failed_once_the_lease_expires(
    own_stack: Stack, fake_llm: FakeLlm
) -> None:
    fake_llm.set_reply(tokens=["a", "b"], pause_after=1)
    _, key = own_stack.create_key()
    with Api(own_stack.base_url, key) as api, ThreadPoolExecutor(max_workers=1) as pool:
        workflow_id = api.publish(CHAT)
        blocking = pool.submit(api.run, workflow_id, {"输入": "hi"})
        wait_for(lambda: fake_llm.token_times, what="the run to be under way")
        run_id = own_stack.running_run(workflow_id)

        # The service dies without a chance to clean up; then its Envoy goes too.
        own_stack.kill()
        fake_llm.release()
        # The client waiting on it is told of the failure: Envoy answers 503 for the reset
        # upstream, or the connection goes with Envoy.
        with contextlib.suppress(httpx.TransportError):
            assert blocking.result(timeout=10).status_code == 503

    own_stack.start()
    with Api(own_stack.base_url, key) as api:
        # The replica that started reaps the dead one's run once its lease has expired.
        run = wait_for(
            lambda: (r := api.get(f"/v1/runs/{run_id}").json())["status"] != "running" and r,
            timeout_s=LEASE_S * 5,
            what="the dead replica's run to be failed",
        )
        assert run["status"] == "failed"
        assert run["error"] == "the replica running it stopped"
        assert api.run(workflow_id, {"输入": "again"}).status_code == 200


def _status(api: Api, workflow_id: str) -> int | None:
    """A new run's status; None when the connection dropped as the service began stopping."""
    try:
        return api.run(workflow_id, {"height": 2, "weight": 80}).status_code
    except httpx.TransportError:
        return None


def test_sigterm_drains_streams_and_refuses_new_runs(own_stack: Stack, fake_llm: FakeLlm) -> None:
    fake_llm.set_reply(tokens=["one ", "two ", "three"], pause_after=1)
    _, key = own_stack.create_key()
    with Api(own_stack.base_url, key) as api:
        workflow_id = api.publish(CHAT)
        bmi = api.publish(BMI)
        frames = []
        with api.stream(workflow_id, {"输入": "hi"}) as source:
            for sse in source.iter_sse():
                frames.append((sse.event, json.loads(sse.data)))
                # Once, at the first token: the LLM is held mid-answer until released.
                if sse.event == "stream" and sum(e == "stream" for e, _ in frames) == 1:
                    assert own_stack.process is not None
                    own_stack.process.send_signal(signal.SIGTERM)
                    # Draining: the service is out of Envoy's rotation, new runs are refused.
                    assert wait_for(lambda: _status(api, bmi) == 503, what="new runs to be refused")
                    fake_llm.release()

    assert frames[-1] == ("output", frames[-1][1])
    assert frames[-1][1]["output"] == "one two three"
    assert own_stack.process.wait(timeout=30) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{own_stack.base_url}/v1/keys", timeout=2)


async def test_200_concurrent_streams_all_complete(
    api: Api, stack: Stack, fake_llm: FakeLlm
) -> None:
    # Every stream is held after its first token until all 200 are open at once.
    fake_llm.set_reply(tokens=None, pause_after=1)
    workflow_id = api.publish(CHAT)
    # A key may start 20 runs a second: ten keys of the account start 200 together.
    keys = [
        api.post("/v1/keys", {"name": f"app-{n}", "scopes": ["run"]}).json()["key"]
        for n in range(10)
    ]
    open_streams = 0
    all_open = asyncio.Event()
    service_rss: list[int] = []

    async def one(client: httpx.AsyncClient, number: int) -> str:
        nonlocal open_streams
        body = {"input": {"输入": f"stream {number}"}, "stream": True}
        headers = {"X-API-KEY": keys[number % len(keys)]}
        frames = []
        async with httpx_sse.aconnect_sse(
            client, "POST", f"/v1/api/workflow/run/{workflow_id}", json=body, headers=headers
        ) as source:
            assert source.response.status_code == 200
            async for sse in source.aiter_sse():
                frames.append((sse.event, json.loads(sse.data)))
                if sse.event == "stream" and sum(e == "stream" for e, _ in frames) == 1:
                    open_streams += 1
                    if open_streams == 200:
                        all_open.set()
        assert frames[-1][0] == "output", frames[-1]
        streamed = "".join(d["Content"] for e, d in frames if e == "stream")
        assert streamed == frames[-1][1]["output"]
        return frames[-1][1]["output"]

    limits = httpx.Limits(max_connections=250, max_keepalive_connections=250)
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=120, limits=limits) as client:
        tasks = [asyncio.create_task(one(client, number)) for number in range(200)]
        assert stack.process is not None
        while not all_open.is_set():
            service_rss.append(_rss_kib(stack.process.pid))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_open.wait(), 0.1)
            assert not any(task.done() and task.exception() for task in tasks)
        service_rss.append(_rss_kib(stack.process.pid))
        fake_llm.release()
        outputs = await asyncio.gather(*tasks)

    assert outputs == [f"echo: stream {number}" for number in range(200)]
    peak_mib = max(service_rss) / 1024
    print(f"\n200 concurrent streams: service peak RSS {peak_mib:.0f} MiB")
    assert peak_mib < 500


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.fixture
def two_replicas(
    tmp_path: Path, fake_llm_server: FakeLlm, redis_url: str
) -> Iterator[tuple[Stack, Stack]]:
    """Two Flowport replicas on one database, sharing rate limits through Redis."""
    database = f"sqlite:///{tmp_path / 'shared.db'}"
    shared = {"FLOWPORT_REDIS_URL": redis_url, "FLOWPORT_RATE_LIMIT_PER_KEY": "5"}
    replicas = tuple(
        Stack(
            data_dir=tmp_path / name,
            database_url=database,
            llm_base_url=fake_llm_server.base_url,
            extra_env=shared,
        )
        for name in ("a", "b")
    )
    try:
        for replica in replicas:
            replica.start()
        yield replicas  # type: ignore[misc]
    finally:
        # Also when the second fails to start: the first must not outlive the test.
        for replica in replicas:
            replica.stop()


def test_replicas_share_the_rate_limit_and_see_revocations_at_once(
    two_replicas: tuple[Stack, Stack],
) -> None:
    a, b = two_replicas
    _, admin = a.create_key()
    with Api(a.base_url, admin) as on_a, Api(b.base_url, admin) as on_b:
        key = on_a.post("/v1/keys", {"name": "app", "scopes": ["run"]}).json()
        # Ten calls alternating between replicas within well under a second: with the limit
        # shared, five pass in all (each replica alone would have let all ten through).
        statuses = [
            (on_a if n % 2 else on_b).get("/v1/runs/run_none", headers={"X-API-KEY": key["key"]})
            for n in range(10)
        ]
        codes = [response.status_code for response in statuses]
        assert codes.count(404) == 5 and codes.count(429) == 5, codes

        # Revoked through one replica, refused by the other on the very next call.
        assert on_a.http.delete(f"/v1/keys/{key['id']}", headers=on_a.headers).status_code == 200
        refused = on_b.get("/v1/runs/run_none", headers={"X-API-KEY": key["key"]})
        assert refused.status_code == 401
