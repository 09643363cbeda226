"""Accepted background runs are durable: a service killed after its 202s still has them run
to their end by the next one to start, each exactly once, even when two replicas start
together; the queue's bound per account answers 429; a queued run can be cancelled; a
background run whose replica dies mid-run is failed, never run again, and its webhook is
told."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from flowport.demo import BMI, CHAT
from tests.fakes.fake_http import FakeHttp, Seen
from tests.fakes.fake_llm import FakeLlm
from tests.integration import transitions
from tests.integration.client import Api
from tests.integration.stack import Stack, wait_for

BMI_INPUT = {"height": 1.8, "weight": 75}
LEASE_S = 2.0
FINAL = ("succeeded", "failed", "cancelled")


def _stack(data_dir: Path, database: str, fake_llm: FakeLlm, **env: str) -> Stack:
    return Stack(
        data_dir=data_dir,
        database_url=database,
        llm_base_url=fake_llm.base_url,
        extra_env={
            "FLOWPORT_FETCH_ALLOW": "127.0.0.1",
            "FLOWPORT_RUN_LEASE_S": str(LEASE_S),
            "FLOWPORT_WEBHOOK_BACKOFF_S": "0.2",
            "FLOWPORT_WEBHOOK_TIMEOUT_S": "1",
            **env,
        },
    )


def _ended(api: Api, run_id: str, timeout_s: float = 30) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        record = api.get(f"/v1/runs/{run_id}").json()
        return record if record["status"] in FINAL else None

    return wait_for(ended, timeout_s=timeout_s, what=f"run {run_id} to end")


def _hooks(fake_http: FakeHttp, count: int) -> list[Seen]:
    def arrived() -> list[Seen] | None:
        seen = [s for s in fake_http.requests if s.path.startswith("/hook/")]
        return seen if len(seen) >= count else None

    return wait_for(arrived, timeout_s=30, what=f"{count} webhook deliveries")


def _async(api: Api, workflow_id: str, input: dict[str, Any], **extra: Any) -> Any:
    return api.run(workflow_id, input, mode="async", **extra)


def test_runs_accepted_before_a_crash_run_once_after_it_and_the_queue_is_bounded(
    tmp_path: Path, fake_llm: FakeLlm, fake_http: FakeHttp
) -> None:
    database = f"sqlite:///{tmp_path / 'flowport.db'}"
    transitions.install(database)
    # This one takes no jobs: whatever it accepts is still queued when it dies.
    accepting = _stack(
        tmp_path / "a",
        database,
        fake_llm,
        FLOWPORT_JOBS_CONCURRENCY="0",
        FLOWPORT_MAX_QUEUED_PER_ACCOUNT="2",
    )
    accepting.start()
    try:
        _, key = accepting.create_key()
        with Api(accepting.base_url, key) as api:
            secret = api.post("/v1/webhooks:rotateSecret", {}).json()["secret"]
            workflow_id = api.publish(BMI)
            first, second = (
                _async(api, workflow_id, BMI_INPUT, webhook_url=fake_http.url(f"/hook/{n}"))
                for n in (1, 2)
            )
            full = _async(api, workflow_id, BMI_INPUT)
            cancelled = api.post(f"/v1/runs/{second.json()['run_id']}:cancel", {})
            third = _async(api, workflow_id, BMI_INPUT, webhook_url=fake_http.url("/hook/3"))
            assert [first.status_code, second.status_code, third.status_code] == [202] * 3
            assert full.status_code == 429, full.text
            assert full.json()["message"] == (
                "this account has 2 background runs waiting, as many as it may"
            )
            assert cancelled.status_code == 200, cancelled.text
            assert cancelled.json()["status"] == "cancelled"
            assert cancelled.json()["error"] == "the run was cancelled by a cancel request"
            assert api.get(f"/v1/runs/{first.json()['run_id']}").json()["status"] == "queued"
    finally:
        accepting.kill()

    after = _stack(tmp_path / "b", database, fake_llm)
    after.start()
    try:
        with Api(after.base_url, key) as api:
            ran = [_ended(api, answer.json()["run_id"]) for answer in (first, third)]
            assert [(r["status"], r["output"]) for r in ran] == [
                ("succeeded", "您的BMI值是23.15")
            ] * 2
            hooks = _hooks(fake_http, 3)
            statuses = {
                s.path: Webhook(secret).verify(s.body, s.headers)["run"]["status"] for s in hooks
            }
            assert statuses == {
                "/hook/1": "succeeded",
                "/hook/2": "cancelled",
                "/hook/3": "succeeded",
            }
    finally:
        after.stop()
    assert transitions.backwards(database) == []


@pytest.fixture
def postgres_database(database: str) -> Iterator[str]:
    """conftest's database, migrated, recording every status change of its runs."""
    transitions.install(database)
    yield database
    assert transitions.backwards(database) == []


@pytest.mark.postgres
def test_two_replicas_starting_together_run_each_queued_run_once(
    tmp_path: Path, postgres_database: str, fake_llm: FakeLlm
) -> None:
    accepting = _stack(tmp_path / "a", postgres_database, fake_llm, FLOWPORT_JOBS_CONCURRENCY="0")
    accepting.start()
    try:
        _, key = accepting.create_key()
        with Api(accepting.base_url, key) as api:
            workflow_id = api.publish(CHAT)
            run_ids = [
                _async(api, workflow_id, {"输入": f"run {n}"}).json()["run_id"] for n in range(8)
            ]
    finally:
        accepting.kill()

    b, c = (_stack(tmp_path / name, postgres_database, fake_llm) for name in "bc")
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(Stack.start, (b, c)))
        with Api(b.base_url, key) as api:
            records = [_ended(api, run_id) for run_id in run_ids]
        assert [r["status"] for r in records] == ["succeeded"] * 8
        assert sorted(r["output"] for r in records) == sorted(f"echo: run {n}" for n in range(8))
        # Each run's model was called once: no run executed twice.
        assert sorted(req["messages"][-1]["content"] for req in fake_llm.requests) == sorted(
            f"run {n}" for n in range(8)
        )
    finally:
        for replica in (b, c):
            replica.stop()


@pytest.mark.postgres
def test_a_background_run_whose_replica_dies_is_failed_once_and_its_webhook_told(
    tmp_path: Path, postgres_database: str, fake_llm: FakeLlm, fake_http: FakeHttp
) -> None:
    fake_llm.set_reply(tokens=["never ", "finished"], pause_after=1)
    dying = _stack(tmp_path / "a", postgres_database, fake_llm)
    dying.start()
    try:
        _, key = dying.create_key()
        with Api(dying.base_url, key) as api:
            secret = api.post("/v1/webhooks:rotateSecret", {}).json()["secret"]
            workflow_id = api.publish(CHAT)
            run_id = _async(
                api, workflow_id, {"输入": "hi"}, webhook_url=fake_http.url("/hook/dead")
            ).json()["run_id"]
            assert fake_llm.wait_for_tokens(1)
            assert api.get(f"/v1/runs/{run_id}").json()["status"] == "running"
    finally:
        dying.kill()
    fake_llm.release()

    survivor = _stack(tmp_path / "b", postgres_database, fake_llm)
    survivor.start()
    try:
        with Api(survivor.base_url, key) as api:
            record = _ended(api, run_id)
            (hook,) = _hooks(fake_http, 1)
        assert (record["status"], record["error"]) == ("failed", "the replica running it stopped")
        assert Webhook(secret).verify(hook.body, hook.headers)["run"]["status"] == "failed"
        # The run was never taken again: one call of its model, the dead replica's.
        assert len(fake_llm.requests) == 1
    finally:
        survivor.stop()


def test_a_stopping_service_ends_its_background_runs_cancelled(
    tmp_path: Path, fake_llm: FakeLlm
) -> None:
    fake_llm.set_reply(tokens=["slow"], pause_after=0)
    stack = _stack(tmp_path / "a", f"sqlite:///{tmp_path / 'flowport.db'}", fake_llm)
    stack.start()
    _, key = stack.create_key()
    with Api(stack.base_url, key) as api:
        workflow_id = api.publish(CHAT)
        run_id = _async(api, workflow_id, {"输入": "hi"}).json()["run_id"]
        wait_for(lambda: fake_llm.requests, what="the run's model call")
        stack.stop()
    stack.start()
    try:
        with Api(stack.base_url, key) as api:
            record = _ended(api, run_id)
        assert (record["status"], record["error"]) == (
            "cancelled",
            "the run was cancelled: the service stopped",
        )
        assert json.dumps(record)  # the record reads back whole
    finally:
        stack.stop()
