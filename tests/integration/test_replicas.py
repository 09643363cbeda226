"""Replicas that behave as one service: two `flowport serve` processes, each with its Envoy,
on one PostgreSQL database and one Redis. A cancel reaches the run wherever it executes, a
run's events are replayed and followed from the other replica, a dead replica's runs are
failed within the lease while the other's go on, and a replica starting touches no live
run. Every status change is recorded by a trigger: none ever moves backwards."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from flowport.demo import CHAT
from tests.fakes.fake_llm import FakeLlm
from tests.integration import transitions
from tests.integration.client import Api, sse_frames
from tests.integration.stack import Stack, wait_for

pytestmark = pytest.mark.postgres

# Short, so that a dead replica's runs are failed within the test's patience.
LEASE_S = 2.0
HEARTBEAT_S = 0.5
Frame = tuple[str, str]  # (event, data)


@pytest.fixture
def database(database: str) -> Iterator[str]:
    """conftest's database, migrated, recording every status change of its runs."""
    transitions.install(database)
    yield database
    assert transitions.backwards(database) == []


def _replica(tmp_path: Path, name: str, database: str, redis_url: str, fake: FakeLlm) -> Stack:
    return Stack(
        data_dir=tmp_path / name,
        database_url=database,
        llm_base_url=fake.base_url,
        extra_env={
            "FLOWPORT_REDIS_URL": redis_url,
            # These tests poll a run every 50 ms beside their streams: not the limiter's test.
            "FLOWPORT_RATE_LIMIT_PER_KEY": "1000",
            "FLOWPORT_RUN_LEASE_S": str(LEASE_S),
            "FLOWPORT_STREAM_HEARTBEAT_S": str(HEARTBEAT_S),
        },
    )


@pytest.fixture
def replicas(
    tmp_path: Path, database: str, redis_url: str, fake_llm: FakeLlm
) -> Iterator[tuple[Stack, Stack]]:
    a, b = (_replica(tmp_path, name, database, redis_url, fake_llm) for name in "ab")
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        for replica in (a, b):
            replica.stop()


def _stream(api: Api, workflow_id: str, text: str, started: Future[str]) -> list[Frame]:
    """A FlowAI stream read to its end; `started` gets the run's id from its first header."""
    with api.stream(workflow_id, {"输入": text}) as source:
        started.set_result(source.response.headers["x-run-id"])
        return [(sse.event, sse.data) for sse in source.iter_sse()]


def _events(api: Api, run_id: str, *, after: int | None = None, count: int | None = None):
    """The run's events from `api`'s replica: (id, event, data) until the end, or the first
    `count` (then the connection is dropped)."""
    frames = []
    with api.run_events(run_id, last_event_id=after) as source:
        assert source.response.status_code == 200, source.response.read()
        for sse in sse_frames(source):
            frames.append((int(sse.id), sse.event, sse.data))
            if count is not None and len(frames) == count:
                break
    return frames


def test_a_cancel_through_one_replica_stops_the_run_on_the_other(
    replicas: tuple[Stack, Stack], fake_llm: FakeLlm
) -> None:
    a, b = replicas
    _, key = a.create_key()
    fake_llm.set_reply(tokens=["a", "b", "c"], pause_after=1)
    with Api(a.base_url, key) as on_a, Api(b.base_url, key) as on_b, ThreadPoolExecutor() as pool:
        workflow_id = on_a.publish(CHAT)
        started: Future[str] = Future()
        stream = pool.submit(_stream, on_a, workflow_id, "hi", started)
        run_id = started.result(timeout=10)
        assert fake_llm.wait_for_tokens(1)

        cancelled = on_b.post(f"/v1/runs/{run_id}:cancel", {})

        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        assert cancelled.json()["error"] == "the run was cancelled by a cancel request"
        frames = stream.result(timeout=10)
        assert frames[-1][0] == "error"
        assert json.loads(frames[-1][1])["code"] == 499
        assert fake_llm.wait_for_disconnect(timeout=5)  # its LLM call was closed
        again = on_b.post(f"/v1/runs/{run_id}:cancel", {})
        assert (again.status_code, again.json()["message"]) == (409, "the run already cancelled")


def test_events_are_replayed_and_followed_from_the_other_replica_across_a_drop(
    replicas: tuple[Stack, Stack], fake_llm: FakeLlm
) -> None:
    a, b = replicas
    _, key = a.create_key()
    fake_llm.set_reply(tokens=list("abcdef"), pause_after=2)
    with Api(a.base_url, key) as on_a, Api(b.base_url, key) as on_b, ThreadPoolExecutor() as pool:
        workflow_id = on_a.publish(CHAT)
        started: Future[str] = Future()
        stream = pool.submit(_stream, on_a, workflow_id, "hi", started)
        run_id = started.result(timeout=10)
        assert fake_llm.wait_for_tokens(2)

        # On the other replica: the frames so far, then the connection drops.
        first = wait_for(
            lambda: (f := _events(on_b, run_id, count=4)) and len(f) == 4 and f,
            what="four frames logged on the other replica",
        )
        # Back with Last-Event-ID: the rest, followed live as the model goes on.
        rest = pool.submit(_events, on_b, run_id, after=first[-1][0])
        fake_llm.release()
        followed = first + rest.result(timeout=20)
        sent = stream.result(timeout=20)

        # The same frames as the run's own stream, numbered 1, 2, 3... without a gap.
        assert [(event, data) for _, event, data in followed] == sent
        assert [seq for seq, _, _ in followed] == list(range(1, len(sent) + 1))
        assert sent[-1][0] == "output"
        # Replayed whole, after the run ended, from either replica.
        for api in (on_a, on_b):
            assert [(event, data) for _, event, data in _events(api, run_id)] == sent


def test_a_killed_replicas_runs_fail_within_the_lease_while_the_others_finish(
    replicas: tuple[Stack, Stack], fake_llm: FakeLlm
) -> None:
    a, b = replicas
    _, key = a.create_key()
    fake_llm.set_reply(tokens=["a", "b"], pause_after=1)
    with Api(a.base_url, key) as on_a, Api(b.base_url, key) as on_b, ThreadPoolExecutor() as pool:
        workflow_id = on_a.publish(CHAT)
        on_a_started: Future[str] = Future()
        on_b_started: Future[str] = Future()
        pool.submit(_stream, on_a, workflow_id, "on a", on_a_started)
        on_b_stream = pool.submit(_stream, on_b, workflow_id, "on b", on_b_started)
        killed_run, living_run = on_a_started.result(10), on_b_started.result(10)
        assert fake_llm.wait_for_tokens(2)

        a.kill()

        # The other replica fails the dead one's run once its lease has expired...
        run = wait_for(
            lambda: (r := on_b.get(f"/v1/runs/{killed_run}").json())["status"] != "running" and r,
            timeout_s=LEASE_S * 4,
            what="the dead replica's run to be failed",
        )
        assert (run["status"], run["error"]) == ("failed", "the replica running it stopped")
        # ...whose log ends with that error, so followers of it end too.
        frames = _events(on_b, killed_run)
        assert frames[-1][1] == "error"
        assert json.loads(frames[-1][2])["code"] == 503
        # Its own run was left alone, and goes on to its end.
        assert on_b.get(f"/v1/runs/{living_run}").json()["status"] == "running"
        fake_llm.release()
        assert on_b_stream.result(timeout=10)[-1][0] == "output"
        assert on_b.get(f"/v1/runs/{living_run}").json()["status"] == "succeeded"


def test_a_replica_starting_leaves_the_runs_of_live_replicas_alone(
    tmp_path: Path, database: str, redis_url: str, fake_llm: FakeLlm
) -> None:
    a, b = (_replica(tmp_path, name, database, redis_url, fake_llm) for name in "ab")
    a.start()
    try:
        _, key = a.create_key()
        fake_llm.set_reply(tokens=["a", "b"], pause_after=1)
        with Api(a.base_url, key) as on_a, ThreadPoolExecutor() as pool:
            workflow_id = on_a.publish(CHAT)
            starts = [Future() for _ in range(3)]
            streams = [
                pool.submit(_stream, on_a, workflow_id, f"run {n}", started)
                for n, started in enumerate(starts)
            ]
            run_ids = [started.result(10) for started in starts]
            assert fake_llm.wait_for_tokens(3)

            b.start()  # recovers and reaps while A's three runs are live
            # Past the lease: B's reaper looks three times a lease.
            time.sleep(LEASE_S * 1.5)
            with Api(b.base_url, key) as on_b:
                for run_id in run_ids:
                    assert on_b.get(f"/v1/runs/{run_id}").json()["status"] == "running"
            fake_llm.release()
            assert [stream.result(10)[-1][0] for stream in streams] == ["output"] * 3
            for run_id in run_ids:
                assert on_a.get(f"/v1/runs/{run_id}").json()["status"] == "succeeded"
    finally:
        b.stop()
        a.stop()


def test_a_quiet_stream_and_its_followers_get_pings(
    replicas: tuple[Stack, Stack], fake_llm: FakeLlm
) -> None:
    a, b = replicas
    _, key = a.create_key()
    # Silent for four heartbeats before its first token.
    fake_llm.set_reply(tokens=["a"], first_token_delay_s=HEARTBEAT_S * 4)
    with Api(a.base_url, key) as on_a, Api(b.base_url, key) as on_b, ThreadPoolExecutor() as pool:
        workflow_id = on_a.publish(CHAT)
        body = {"input": {"输入": "hi"}, "stream": True}
        with on_a.http.stream(
            "POST", f"/v1/api/workflow/run/{workflow_id}", json=body, headers=on_a.headers
        ) as response:
            run_id = response.headers["x-run-id"]
            follower = pool.submit(_raw_events, on_b, run_id)
            raw = response.read().decode()
        followed = follower.result(timeout=10)

    for text in (raw, followed):
        assert ": ping\n\n" in text
        assert "event: output\n" in text.rstrip().split("\n\n")[-1]


def _raw_events(api: Api, run_id: str) -> str:
    with api.http.stream("GET", f"/v1/runs/{run_id}/events", headers=api.headers) as response:
        return response.read().decode()
