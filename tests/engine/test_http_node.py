"""Http nodes against a local API: requests, outputs, retries, failures, the guard, concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from tenacity import wait_none

from flowport.engine.definition import parse_definition
from flowport.engine.nodes import http_node
from flowport.errors import InvalidArgument, UpstreamFailed
from flowport.outbound import FetchPolicy
from tests.engine.builders import chain, compiled, failed, finished, run_all, succeeded
from tests.fakes.fake_http import FakeHttp

OUT = {"id": "end", "type": "out", "output": "{{ call.output }}"}


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(http_node, "BACKOFF", wait_none())
    yield


def call(url: str, **fields: Any) -> dict[str, Any]:
    return {"id": "call", "type": "http", "url": url, **fields}


async def test_get_with_templated_url_and_headers(fake_http: FakeHttp) -> None:
    node = call(
        fake_http.url("/echo?q={{ text | urlencode }}"),
        headers={"X-Api-Key": "secret-{{ text | length }}"},
    )
    events = await run_all(compiled(chain(node, OUT)), {"text": "a b"})
    output = finished(events)["call"].output
    assert output is not None
    assert output["status"] == 200
    assert output["json"]["method"] == "GET" and output["json"]["query"] == {"q": "a b"}
    assert output["json"]["headers"]["x-api-key"] == "secret-3"
    assert output["headers"]["content-type"].startswith("application/json")
    assert succeeded(events).output == output["output"]  # the body text
    # The record keeps header names, never their values, and no query string.
    assert finished(events)["call"].inputs == {
        "method": "GET",
        "url": fake_http.url("/echo"),
        "headers": ["X-Api-Key"],
    }


async def test_json_body_is_rendered_and_sent(fake_http: FakeHttp) -> None:
    node = call(fake_http.url("/echo"), method="post", body='{"text": {{ text | tojson }}}')
    events = await run_all(compiled(chain(node, OUT)), {"text": 'say "hi"'})
    echoed = finished(events)["call"].output["json"]  # type: ignore[index]
    assert echoed["method"] == "POST" and echoed["body"] == '{"text": "say \\"hi\\""}'
    assert echoed["headers"]["content-type"] == "application/json"


async def test_text_body_and_non_json_answer(fake_http: FakeHttp) -> None:
    node = call(fake_http.url("/echo"), method="PUT", body="hello {{ text }}", body_type="text")
    events = await run_all(compiled(chain(node, OUT)), {"text": "bob"})
    assert finished(events)["call"].output["json"]["body"] == "hello bob"  # type: ignore[index]
    plain = await run_all(compiled(chain(call(fake_http.url("/text")), OUT)), {})
    assert finished(plain)["call"].output["json"] is None  # type: ignore[index]
    assert succeeded(plain).output == "plain text"


async def test_a_body_that_is_not_json_once_rendered_fails_the_node(fake_http: FakeHttp) -> None:
    node = call(fake_http.url("/echo"), method="POST", body='{"text": "{{ text }}"}')
    error = failed(await run_all(compiled(chain(node, OUT)), {"text": 'a"b'})).error
    assert isinstance(error, InvalidArgument)
    assert error.message.startswith("node call: body is not valid JSON once rendered")
    assert fake_http.requests == []


async def test_idempotent_requests_are_retried_on_5xx(fake_http: FakeHttp) -> None:
    events = await run_all(compiled(chain(call(fake_http.url("/flaky/2")), OUT)), {})
    assert succeeded(events).output == "ok"
    assert len(fake_http.requests) == 3


async def test_retries_run_out_and_the_status_fails_the_node(fake_http: FakeHttp) -> None:
    node = call(fake_http.url("/status/500?token=hidden"), retries=1)
    error = failed(await run_all(compiled(chain(node, OUT)), {})).error
    assert isinstance(error, UpstreamFailed) and error.node_id == "call"
    assert error.message == (
        f"node call: GET {fake_http.url('/status/500')} answered HTTP 500"
        " Internal Server Error: status 500"
    )
    assert len(fake_http.requests) == 2


async def test_post_is_never_retried(fake_http: FakeHttp) -> None:
    node = call(fake_http.url("/flaky/1"), method="POST", body="{}")
    error = failed(await run_all(compiled(chain(node, OUT)), {})).error
    assert "answered HTTP 503" in error.message
    assert len(fake_http.requests) == 1


async def test_4xx_is_not_retried_and_can_be_an_output(fake_http: FakeHttp) -> None:
    strict = failed(await run_all(compiled(chain(call(fake_http.url("/status/404")), OUT)), {}))
    assert "answered HTTP 404 Not Found" in strict.error.message
    assert len(fake_http.requests) == 1
    lenient = call(fake_http.url("/status/404"), fail_on_status=False)
    out = {"id": "end", "type": "out", "output": "{{ call.status }}: {{ call.output }}"}
    assert succeeded(await run_all(compiled(chain(lenient, out)), {})).output == "404: status 404"


async def test_the_ssrf_guard_applies_to_http_nodes(fake_http: FakeHttp) -> None:
    workflow = compiled(chain(call(fake_http.url("/echo")), OUT))
    error = failed(await run_all(workflow, {}, fetch_policy=FetchPolicy())).error
    assert isinstance(error, InvalidArgument)
    assert "127.0.0.1 is a loopback address" in error.message
    assert fake_http.requests == []
    metadata = call("http://169.254.169.254/latest/meta-data/")
    error = failed(await run_all(compiled(chain(metadata, OUT)), {})).error
    assert "169.254.169.254 is a link-local address" in error.message


async def test_responses_over_the_size_limit_fail_the_node(fake_http: FakeHttp) -> None:
    policy = FetchPolicy(allow=("127.0.0.1",), max_bytes=100)
    workflow = compiled(chain(call(fake_http.url("/big/101")), OUT))
    error = failed(await run_all(workflow, {}, fetch_policy=policy)).error
    assert error.message == (
        f"node call: GET {fake_http.url('/big/101')}: response larger than 100 bytes"
    )


async def test_a_slow_api_times_out(fake_http: FakeHttp) -> None:
    node = call(fake_http.url("/hang"), timeout_s=0.2, retries=0)
    error = failed(await run_all(compiled(chain(node, OUT)), {})).error
    assert isinstance(error, UpstreamFailed)
    assert error.message.endswith("/hang: timed out after 0.2s")


async def test_parallel_http_nodes_are_in_flight_together(fake_http: FakeHttp) -> None:
    definition = {
        "name": "fan-out",
        "nodes": [
            {"id": "start", "type": "in"},
            # The server answers /together only once both requests are inside it: run one
            # after the other, the first would time out waiting for the second.
            {**call(fake_http.url("/together"), timeout_s=5, retries=0), "id": "a"},
            {**call(fake_http.url("/together"), timeout_s=5, retries=0), "id": "b"},
            {"id": "end", "type": "out", "output": "{{ a.output }}+{{ b.output }}"},
        ],
        "edges": [
            {"from": "start", "to": "a"},
            {"from": "start", "to": "b"},
            {"from": "a", "to": "end"},
            {"from": "b", "to": "end"},
        ],
    }
    events = await run_all(compiled(definition), {})
    assert succeeded(events).output == "together+together"
    assert fake_http.max_in_flight == 2


async def test_cancelling_the_run_closes_the_request(fake_http: FakeHttp) -> None:
    workflow = compiled(chain(call(fake_http.url("/hang"), timeout_s=30), OUT))
    task = asyncio.ensure_future(run_all(workflow, {}))
    assert await asyncio.to_thread(fake_http.wait_for_request)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The server saw the connection close: the request did not go on in the background.
    assert await asyncio.to_thread(fake_http.wait_for_disconnect)
    assert len(fake_http.requests) == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"url": ""}, "nodes[1].url: must not be empty"),
        ({"method": "FETCH"}, "nodes[1].method: expected 'GET', 'HEAD'"),
        ({"timeout_s": 0}, "nodes[1].timeout_s: must be greater than 0, got 0"),
        ({"retries": 11}, "nodes[1].retries: must be at most 10, got 11"),
        ({"body_type": "xml"}, "nodes[1].body_type: expected 'json' or 'text'"),
        ({"headers": {"X": "{{ nope }}"}}, "nodes[1].headers.X: 'nope' is not an input"),
    ],
)
def test_bad_http_nodes_are_refused_at_save_time(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        parse_definition(chain({**call("https://api.example.com/"), **change}, OUT))
    assert refused.value.message.startswith(message), refused.value.message
