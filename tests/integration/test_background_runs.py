"""Background runs and signed webhooks through the real stack: a run accepted with 202 goes
to its end with nobody connected, its end is POSTed once to its webhook, signed the Standard
Webhooks way (verified here with the standardwebhooks library), retried when the receiver
fails, and every attempt is on the run's record."""

from __future__ import annotations

import json
import time
from typing import Any

import grpc
import pytest
from standardwebhooks.webhooks import Webhook

from flowport.demo import BMI, CHAT
from flowport.v1 import runner_pb2, runner_pb2_grpc
from tests.fakes.fake_http import FakeHttp, Seen
from tests.fakes.fake_llm import FakeLlm
from tests.integration.client import Api
from tests.integration.stack import Stack, wait_for

BMI_INPUT = {"height": 1.8, "weight": 75}
BMI_OUTPUT = "您的BMI值是23.15"


def _secret(api: Api) -> str:
    made = api.post("/v1/webhooks:rotateSecret", {})
    assert made.status_code == 200, made.text
    secret = made.json()["secret"]
    assert secret.startswith("whsec_")
    return str(secret)


def _ended(api: Api, run_id: str, *, deliveries: int = 0) -> dict[str, Any]:
    """The run's record once it has ended and has `deliveries` webhook attempts on it."""

    def ended() -> dict[str, Any] | None:
        record = api.get(f"/v1/runs/{run_id}").json()
        done = record["status"] in ("succeeded", "failed", "cancelled")
        return record if done and len(record["webhook_deliveries"]) >= deliveries else None

    return wait_for(ended, timeout_s=15, what=f"run {run_id} to end")


def _posts(fake_http: FakeHttp, path: str, count: int) -> list[Seen]:
    """The `count` requests to `path`, once they came."""
    return wait_for(
        lambda: (
            [s for s in fake_http.requests if s.path == path][:count]
            if len([s for s in fake_http.requests if s.path == path]) >= count
            else None
        ),
        timeout_s=15,
        what=f"{count} webhook calls to {path}",
    )


def _verified(secret: str, seen: Seen) -> dict[str, Any]:
    """The delivery's payload, once the standardwebhooks library verified its signature."""
    headers = {name: seen.headers[name] for name in ("webhook-id", "webhook-timestamp")}
    headers["webhook-signature"] = seen.headers["webhook-signature"]
    payload = Webhook(secret).verify(seen.body, headers)
    assert isinstance(payload, dict)
    return payload


def test_a_background_run_ends_with_nobody_connected_and_its_webhook_comes_once_signed(
    api: Api, fake_http: FakeHttp
) -> None:
    secret = _secret(api)
    workflow_id = api.publish(BMI)

    accepted = api.run(workflow_id, BMI_INPUT, mode="async", webhook_url=fake_http.url("/hook/"))

    assert accepted.status_code == 202, accepted.text
    body = accepted.json()
    run_id = body["run_id"]
    assert body == {"run_id": run_id, "status": "queued", "events_url": f"/v1/runs/{run_id}/events"}
    assert accepted.headers["location"] == f"/v1/runs/{run_id}"
    (seen,) = _posts(fake_http, "/hook/", 1)
    assert seen.method == "POST"
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["webhook-id"] == run_id
    payload = _verified(secret, seen)
    assert payload["type"] == "run.finished"
    assert payload["run"]["id"] == run_id
    assert (payload["run"]["status"], payload["run"]["output"]) == ("succeeded", BMI_OUTPUT)
    record = _ended(api, run_id, deliveries=1)
    assert record["output"] == BMI_OUTPUT
    (delivery,) = record["webhook_deliveries"]
    assert (delivery["attempt"], delivery["status_code"]) == (1, 204)
    assert "error" not in delivery
    # Once: nothing more comes.
    time.sleep(1.0)
    assert len([s for s in fake_http.requests if s.path == "/hook/"]) == 1


def test_a_tampered_delivery_fails_verification(api: Api, fake_http: FakeHttp) -> None:
    secret = _secret(api)
    workflow_id = api.publish(BMI)
    api.run(workflow_id, BMI_INPUT, mode="async", webhook_url=fake_http.url("/hook/"))
    (seen,) = _posts(fake_http, "/hook/", 1)
    forged = Seen(**{**seen.__dict__, "body": seen.body.replace("succeeded", "failed")})

    with pytest.raises(Exception, match=r"(?i)signature"):
        _verified(secret, forged)
    # A rotated secret signs from then on; the old one verifies nothing new.
    assert _secret(api) != secret


def test_a_receiver_that_fails_twice_gets_a_third_attempt_and_the_record_lists_all(
    api: Api, fake_http: FakeHttp
) -> None:
    secret = _secret(api)
    workflow_id = api.publish(BMI)

    run_id = api.run(
        workflow_id, BMI_INPUT, mode="async", webhook_url=fake_http.url("/flaky/2")
    ).json()["run_id"]

    first, second, third = _posts(fake_http, "/flaky/2", 3)
    # One id for every attempt: the receiver tells a retry from a new delivery by it.
    assert {s.headers["webhook-id"] for s in (first, second, third)} == {run_id}
    assert _verified(secret, third)["run"]["status"] == "succeeded"
    attempts = _ended(api, run_id, deliveries=3)["webhook_deliveries"]
    assert [(a["attempt"], a["status_code"]) for a in attempts] == [(1, 503), (2, 503), (3, 200)]
    assert attempts[0]["error"] == "answered 503 Service Unavailable"
    assert "error" not in attempts[2]


def test_a_blocking_or_streamed_run_tells_its_webhook_too(api: Api, fake_http: FakeHttp) -> None:
    secret = _secret(api)
    workflow_id = api.publish(BMI)

    blocking = api.run(workflow_id, BMI_INPUT, webhook_url=fake_http.url("/hook/blocking"))
    with api.stream(workflow_id, BMI_INPUT, webhook_url=fake_http.url("/hook/stream")) as source:
        frames = [sse.event for sse in source.iter_sse()]

    assert blocking.status_code == 200, blocking.text
    assert frames[-1] == "output"
    (hooked,) = _posts(fake_http, "/hook/blocking", 1)
    assert _verified(secret, hooked)["run"]["id"] == blocking.json()["run_id"]
    (streamed,) = _posts(fake_http, "/hook/stream", 1)
    assert _verified(secret, streamed)["run"]["status"] == "succeeded"


def test_the_workflows_own_webhook_hears_its_accounts_runs(api: Api, fake_http: FakeHttp) -> None:
    secret = _secret(api)
    workflow_id = api.publish({**BMI, "webhook_url": fake_http.url("/hook/own")})

    run_id = api.run(workflow_id, BMI_INPUT, mode="async").json()["run_id"]

    (seen,) = _posts(fake_http, "/hook/own", 1)
    assert _verified(secret, seen)["run"]["id"] == run_id


def test_linkai_and_grpc_accept_background_runs(
    api: Api, stack: Stack, fake_http: FakeHttp
) -> None:
    workflow_id = api.publish(BMI)

    linkai = api.linkai(
        {"app_code": workflow_id, "args": {"height": "1.8", "weight": "75"}, "mode": "async"}
    )
    typed = api.post(
        f"/v1/workflows/{workflow_id}:run",
        {"input": BMI_INPUT, "mode": "async"},
    )
    request = runner_pb2.RunRequest(workflow_id=workflow_id, mode="async")
    request.input.update(BMI_INPUT)
    with grpc.insecure_channel(stack.grpc_target) as channel:
        runner = runner_pb2_grpc.WorkflowRunnerStub(channel)
        answer = runner.Run(request, metadata=(("x-api-key", api.key),))
        # Inputs are checked at the call: a bad one is refused then, not queued.
        request.input.Clear()
        with pytest.raises(grpc.RpcError) as refused:
            runner.Run(request, metadata=(("x-api-key", api.key),))

    assert linkai.status_code == 202, linkai.text
    envelope = linkai.json()
    run_id = envelope["data"]["run_id"]
    assert envelope == {
        "success": True,
        "code": 202,
        "message": "accepted",
        "data": {"run_id": run_id, "status": "queued", "events_url": f"/v1/runs/{run_id}/events"},
    }
    assert linkai.headers["location"] == f"/v1/runs/{run_id}"
    assert typed.status_code == 202, typed.text
    assert typed.json()["status"] == "queued"
    assert typed.headers["location"] == f"/v1/runs/{typed.json()['run_id']}"
    assert (answer.status, answer.events_url) == ("queued", f"/v1/runs/{answer.run_id}/events")
    assert _ended(api, run_id)["output"] == BMI_OUTPUT
    assert _ended(api, typed.json()["run_id"])["status"] == "succeeded"
    assert _ended(api, answer.run_id)["output"] == BMI_OUTPUT
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == "input.height: required"


def test_a_background_runs_events_are_followed_from_the_start(api: Api, fake_llm: FakeLlm) -> None:
    fake_llm.set_reply(tokens=["one ", "two"])
    workflow_id = api.publish(CHAT)

    run_id = api.run(workflow_id, {"输入": "hi"}, mode="async").json()["run_id"]

    with api.run_events(run_id) as source:
        events = [(sse.event, json.loads(sse.data)) for sse in source.iter_sse() if sse.data]
    assert events[0][1]["Type"] == "start"
    assert "".join(data["Content"] for kind, data in events if kind == "stream") == "one two"
    assert events[-1] == ("output", {**events[-1][1], "output": "one two"})


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://10.0.0.1/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("ftp://example.com/hook", "http:// or https://"),
    ],
)
def test_a_webhook_to_a_private_address_is_refused_at_the_call(
    api: Api, url: str, problem: str
) -> None:
    _secret(api)
    workflow_id = api.publish(BMI)

    refused = api.run(workflow_id, BMI_INPUT, mode="async", webhook_url=url)

    assert refused.status_code == 400, refused.text
    assert refused.json()["message"].startswith("webhook_url: ")
    assert problem in refused.json()["message"]


def test_a_webhook_needs_the_accounts_secret_and_rotating_it_needs_admin(
    api: Api, stack: Stack, fake_http: FakeHttp
) -> None:
    workflow_id = api.publish(BMI)
    _, run_only = stack.create_key(account=api.account, scopes=("run",))

    unsigned = api.run(workflow_id, BMI_INPUT, webhook_url=fake_http.url("/hook/"))
    with Api(stack.base_url, run_only) as runner:
        rotate = runner.post("/v1/webhooks:rotateSecret", {})

    assert unsigned.status_code == 400
    assert unsigned.json()["message"] == (
        "webhook_url: the account has no webhook secret to sign with: "
        "POST /v1/webhooks:rotateSecret"
    )
    assert rotate.status_code == 403, rotate.text


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"mode": "later"}, "mode: must be one of 'blocking', 'stream', 'async'"),
        ({"mode": "async", "stream": True}, 'mode: "async" cannot go with "stream": true'),
        ({"webhook_url": 7}, "webhook_url: must be an http:// or https:// URL"),
    ],
)
def test_a_bad_mode_or_webhook_url_is_a_400_naming_it(
    api: Api, extra: dict[str, Any], message: str
) -> None:
    workflow_id = api.publish(BMI)

    refused = api.run(workflow_id, BMI_INPUT, **extra)

    assert (refused.status_code, refused.json()["message"]) == (400, message)


def test_cancelling_a_run_that_already_ended_in_the_background_is_409(api: Api) -> None:
    workflow_id = api.publish(BMI)
    run_id = api.run(workflow_id, BMI_INPUT, mode="async").json()["run_id"]
    _ended(api, run_id)

    again = api.post(f"/v1/runs/{run_id}:cancel", {})

    assert (again.status_code, again.json()["message"]) == (409, "the run already succeeded")
