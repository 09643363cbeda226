"""Idempotency-Key on run calls through the real stack: a retry with the same key and body is
the same run (the fake LLM counts the workflow's calls: one), whether the first call blocked,
streamed or ran in the background, whether the retry comes after it or alongside it; the
same key with another body is 422."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import httpx
import pytest

from flowport.demo import CHAT
from flowport.v1 import runner_pb2, runner_pb2_grpc
from tests.fakes.fake_llm import FakeLlm
from tests.integration.client import Api, linkai_failure
from tests.integration.stack import Stack, random_token, wait_for

INPUT = {"输入": "hello"}


def _keyed(api: Api, key: str) -> dict[str, str]:
    return {**api.headers, "Idempotency-Key": key}


def _streamed(api: Api, workflow_id: str, key: str) -> list[tuple[str, Any]]:
    with api.http.stream(
        "POST",
        f"/v1/api/workflow/run/{workflow_id}",
        json={"input": INPUT, "stream": True},
        headers=_keyed(api, key),
    ) as response:
        assert response.status_code == 200, response.read()
        text = response.read().decode()
    frames = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            frames.append((fields["event"], json.loads(fields["data"])))
    return frames


def test_a_blocking_retry_is_answered_with_the_first_calls_outcome(
    api: Api, fake_llm: FakeLlm
) -> None:
    fake_llm.set_reply(tokens=["only ", "once"])
    workflow_id = api.publish(CHAT)
    key = random_token(12)

    first = api.run(workflow_id, INPUT, headers=_keyed(api, key))
    again = api.run(workflow_id, INPUT, headers=_keyed(api, key))

    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert again.json() == first.json()
    assert again.json()["output"] == "only once"
    assert again.headers["x-run-id"] == first.headers["x-run-id"]
    assert again.headers["x-session-id"] == first.headers["x-session-id"]
    assert len(fake_llm.requests) == 1


def test_a_failed_run_is_answered_again_with_its_error(api: Api, fake_llm: FakeLlm) -> None:
    fake_llm.set_reply(tokens=None, status=500)
    workflow_id = api.publish(CHAT)
    key = random_token(12)

    first = api.run(workflow_id, INPUT, headers=_keyed(api, key))
    fake_llm.set_reply(tokens=["would succeed now"])
    again = api.run(workflow_id, INPUT, headers=_keyed(api, key))

    assert first.status_code == again.status_code == 502, (first.text, again.text)
    assert again.json() == first.json()
    assert again.headers["x-run-id"] == first.headers["x-run-id"]


def test_a_stream_retry_replays_the_first_streams_events(api: Api, fake_llm: FakeLlm) -> None:
    fake_llm.set_reply(tokens=["a", "b", "c"])
    workflow_id = api.publish(CHAT)
    key = random_token(12)

    first = _streamed(api, workflow_id, key)
    again = _streamed(api, workflow_id, key)

    assert first[-1][0] == again[-1][0] == "output"
    assert again[-1][1] == first[-1][1]
    text = "".join(data["Content"] for event, data in again if event == "stream")
    assert text == "abc"
    assert len(fake_llm.requests) == 1


def test_an_async_retry_is_the_same_202(api: Api, fake_llm: FakeLlm) -> None:
    workflow_id = api.publish(CHAT)
    key = random_token(12)
    body = {"input": INPUT, "mode": "async"}
    route = f"/v1/api/workflow/run/{workflow_id}"

    first = api.post(route, body, headers=_keyed(api, key))
    again = api.post(route, body, headers=_keyed(api, key))

    assert first.status_code == again.status_code == 202, (first.text, again.text)
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    run_id = first.json()["run_id"]
    wait_for(
        lambda: api.get(f"/v1/runs/{run_id}").json()["status"] == "succeeded",
        what="the background run to end",
    )
    assert len(fake_llm.requests) == 1


def test_two_calls_at_once_with_one_key_run_the_workflow_once(api: Api, fake_llm: FakeLlm) -> None:
    # The first call holds the model mid-answer while the second arrives.
    fake_llm.set_reply(tokens=["x", "y"], pause_after=1)
    workflow_id = api.publish(CHAT)
    key = random_token(12)

    with ThreadPoolExecutor(2) as pool:
        calls = [
            pool.submit(api.run, workflow_id, INPUT, headers=_keyed(api, key)) for _ in range(2)
        ]
        assert fake_llm.wait_for_tokens(1)
        fake_llm.release()
        answers = [call.result(timeout=30) for call in calls]

    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert answers[0].json() == answers[1].json()
    assert answers[0].json()["output"] == "xy"
    assert len(fake_llm.requests) == 1


def test_a_keyed_run_goes_on_when_its_client_leaves_so_the_retry_gets_its_output(
    api: Api, fake_llm: FakeLlm
) -> None:
    fake_llm.set_reply(tokens=["still ", "here"], pause_after=1)
    workflow_id = api.publish(CHAT)
    key = random_token(12)

    with pytest.raises(httpx.ReadTimeout):
        api.http.post(
            f"/v1/api/workflow/run/{workflow_id}",
            json={"input": INPUT},
            headers=_keyed(api, key),
            timeout=1.0,
        )
    fake_llm.release()
    again = api.run(workflow_id, INPUT, headers=_keyed(api, key))

    assert again.status_code == 200, again.text
    assert again.json()["output"] == "still here"
    assert len(fake_llm.requests) == 1


def test_the_same_key_with_another_body_is_422(api: Api) -> None:
    workflow_id = api.publish(CHAT)
    key = random_token(12)
    api.run(workflow_id, INPUT, headers=_keyed(api, key))

    other = api.run(workflow_id, {"输入": "something else"}, headers=_keyed(api, key))
    linkai = api.http.post(
        "/v1/workflow/run",
        json={"app_code": workflow_id, "args": {"input_text": "hello"}},
        headers={"Authorization": f"Bearer {api.key}", "Idempotency-Key": key},
    )

    assert other.status_code == 422, other.text
    assert other.json() == {"code": 422, "message": "Idempotency-Key was used with another body"}
    assert linkai_failure(linkai, 422) == "Idempotency-Key was used with another body"


def test_a_refused_first_call_leaves_the_key_free(api: Api) -> None:
    workflow_id = api.publish(CHAT)
    key = random_token(12)

    refused = api.run(workflow_id, {"wrong": 1}, headers=_keyed(api, key))
    fixed = api.run(workflow_id, INPUT, headers=_keyed(api, key))

    assert refused.status_code == 400
    # Another body, but the refused call never made a run: the key was free again.
    assert fixed.status_code == 200, fixed.text


def test_keys_are_per_account(api: Api, stack: Stack, fake_llm: FakeLlm) -> None:
    workflow_id = api.publish({**CHAT, "visibility": "public"})
    _, other_key = stack.create_key()
    key = random_token(12)

    mine = api.run(workflow_id, INPUT, headers=_keyed(api, key))
    with Api(stack.base_url, other_key) as other:
        theirs = other.run(workflow_id, INPUT, headers=_keyed(other, key))

    assert mine.status_code == theirs.status_code == 200
    assert mine.json()["run_id"] != theirs.json()["run_id"]
    assert len(fake_llm.requests) == 2


def test_a_bad_key_is_a_400_naming_it(api: Api) -> None:
    workflow_id = api.publish(CHAT)

    refused = api.run(workflow_id, INPUT, headers=_keyed(api, "k" * 256))

    assert refused.status_code == 400
    assert refused.json()["message"] == ("Idempotency-Key: must be 1 to 255 printable characters")


def test_grpc_run_and_run_stream_take_the_key_as_metadata(
    api: Api, stack: Stack, fake_llm: FakeLlm
) -> None:
    fake_llm.set_reply(tokens=["g", "rpc"])
    workflow_id = api.publish(CHAT)
    run_key, stream_key = random_token(12), random_token(12)
    request = runner_pb2.RunRequest(workflow_id=workflow_id)
    request.input.update(INPUT)
    stream_request = runner_pb2.RunStreamRequest(workflow_id=workflow_id)
    stream_request.input.update(INPUT)

    with grpc.insecure_channel(stack.grpc_target) as channel:
        runner = runner_pb2_grpc.WorkflowRunnerStub(channel)

        def run(key: str) -> runner_pb2.RunResponse:
            return runner.Run(request, metadata=(("x-api-key", api.key), ("idempotency-key", key)))

        def stream(key: str) -> list[runner_pb2.RunStreamResponse]:
            metadata = (("x-api-key", api.key), ("idempotency-key", key))
            return list(runner.RunStream(stream_request, metadata=metadata))

        first, again = run(run_key), run(run_key)
        streamed, replayed = stream(stream_key), stream(stream_key)

    assert (again.run_id, again.output, again.status) == (first.run_id, "grpc", "succeeded")
    assert streamed[-1].output.run_id == replayed[-1].output.run_id
    assert replayed[-1].output.output == "grpc"
    assert replayed[0].WhichOneof("event") == "run_started"
    assert len(fake_llm.requests) == 2
