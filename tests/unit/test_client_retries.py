"""flowport.client's retry policy on answers the stack cannot be made to give on demand (a
503 from a proxy, a Retry-After as an HTTP date), and the errors it raises: tenacity runs
it as the client does, with its sleeps recorded instead of slept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from tenacity import Retrying

from flowport.client import FlowportError, RetryPolicy
from flowport.client.errors import retry_after_s
from flowport.client.retries import idempotency_headers, repeatable

POLICY = RetryPolicy(max_attempts=4, backoff_s=0.5, max_backoff_s=1.5, max_retry_after_s=10)


def _retried(
    *answers: httpx.Response | Exception, repeatable: bool = True
) -> tuple[httpx.Response, list[float], int]:
    """The answer the policy ends with, the waits before each retry, and attempts made."""
    sleeps: list[float] = []
    attempts = 0
    queue = list(answers)

    def attempt() -> httpx.Response:
        nonlocal attempts
        attempts += 1
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    retrying = Retrying(**POLICY.tenacity_kwargs(repeatable), sleep=sleeps.append)
    return retrying(attempt), sleeps, attempts


def _response(status: int, headers: dict[str, str] | None = None, **json: object) -> httpx.Response:
    return httpx.Response(status, headers=headers, json=json or None)


def test_a_429_waits_its_retry_after_and_a_503_backs_off_with_jitter() -> None:
    answer, sleeps, attempts = _retried(
        _response(429, {"retry-after": "2"}),
        _response(503),
        _response(502),
        _response(200, output="ok"),
    )
    assert (answer.status_code, attempts) == (200, 4)
    assert 2 <= sleeps[0] <= 2 + POLICY.backoff_s
    # The second retry waits backoff_s x 2, the third is held at max_backoff_s, each plus
    # up to backoff_s at random.
    assert 1.0 <= sleeps[1] <= 1.5 + POLICY.backoff_s
    assert 1.5 <= sleeps[2] <= 1.5 + POLICY.backoff_s


def test_connection_errors_are_retried_until_attempts_run_out_then_raised() -> None:
    refused = httpx.ConnectError("connection refused")
    with pytest.raises(httpx.ConnectError):
        _retried(*[refused] * POLICY.max_attempts)
    # The last answer is given as it came when attempts run out.
    answer, sleeps, attempts = _retried(*[_response(503)] * POLICY.max_attempts)
    assert (answer.status_code, attempts, len(sleeps)) == (503, 4, 3)


@pytest.mark.parametrize(
    "answer",
    [
        _response(503, {"x-run-id": "run_x"}, code=503, message="no LLM provider"),
        _response(502, {"x-run-id": "run_x"}, code=502, message="LLM provider failed"),
        _response(429, code=429, message="this account has 100 background runs waiting"),
        _response(429, {"retry-after": "3600"}, code=429, message="rate limited"),
        _response(500, code=500, message="internal error"),
        _response(400, code=400, message="input.weight: required"),
    ],
    ids=["run-503", "run-502", "queue-full", "long-retry-after", "500", "400"],
)
def test_answers_that_a_repeat_would_not_change_are_not_retried(answer: httpx.Response) -> None:
    assert _retried(answer, _response(200))[0] is answer


def test_a_call_that_may_not_be_repeated_is_tried_once_whatever_happens() -> None:
    limited = _response(429, {"retry-after": "1"})
    assert _retried(limited, _response(200), repeatable=False)[0] is limited
    with pytest.raises(httpx.ReadError):
        _retried(httpx.ReadError("cut"), _response(200), repeatable=False)


def test_which_calls_may_be_repeated() -> None:
    assert repeatable("GET", {}, False) and repeatable("DELETE", {}, False)
    assert repeatable("PUT", {}, False)
    assert not repeatable("POST", {}, False)
    assert repeatable("POST", {}, True)  # cancel
    assert repeatable("POST", idempotency_headers(None, True), False)
    assert repeatable("POST", idempotency_headers("order-42", False), False)
    assert idempotency_headers("order-42", True) == {"Idempotency-Key": "order-42"}
    assert idempotency_headers(None, False) == {}
    made = {idempotency_headers(None, True)["Idempotency-Key"] for _ in range(3)}
    assert len(made) == 3


def test_retry_after_as_seconds_or_an_http_date() -> None:
    assert retry_after_s(_response(429, {"retry-after": "3"})) == 3.0
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    seconds = retry_after_s(_response(429, {"retry-after": later}))
    assert seconds is not None and 25 <= seconds <= 30
    assert retry_after_s(_response(429, {"retry-after": "soon"})) is None
    assert retry_after_s(_response(429)) is None


def test_an_error_reads_the_status_json_of_every_route() -> None:
    rich = FlowportError.from_response(
        _response(
            429,
            {"retry-after": "1"},
            code=429,
            message="rate limited: at most 20 requests per second for this key",
            details=[
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "RATE_LIMITED",
                    "domain": "flowport",
                    "metadata": {},
                },
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retry_delay": "1s"},
            ],
        )
    )
    assert (rich.status, rich.code, rich.reason, rich.retry_after) == (
        429,
        429,
        "RATE_LIMITED",
        1.0,
    )
    assert len(rich.details) == 2
    assert str(rich) == "429 rate limited: at most 20 requests per second for this key"

    flowai = FlowportError.from_response(
        _response(500, {"x-run-id": "run_1"}, code=500, message="node calc: boom")
    )
    assert (flowai.reason, flowai.run_id, flowai.message) == (None, "run_1", "node calc: boom")

    envoy = FlowportError.from_response(
        httpx.Response(503, text="no healthy upstream", headers={"content-type": "text/plain"})
    )
    assert (envoy.status, envoy.code, envoy.message) == (503, 503, "no healthy upstream")
