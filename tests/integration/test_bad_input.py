"""Malformed bodies on every surface: always a 4xx whose message names the problem, never a 5xx
or a leaked exception, and the service answers the next call as usual."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest

from flowport.demo import BMI
from tests.integration.client import Api

# Nested 40 levels: valid JSON that Python's parser and Envoy's transcoder both take, deeper than
# a google.protobuf.Struct can carry to the service.
DEEP_OBJECT = b'{"a":' * 40 + b"1" + b"}" * 40
HUGE_INT = b"9" * 5000  # beyond Python's 4300-digit limit for int()
BIG_INT = b"1" + b"0" * 400  # a valid JSON number, beyond any double
# What a message must never show: an exception's class or trace, the gRPC layer.
INTERNALS = ("<class", "Traceback", "Error:", "grpc", "upb")

# fmt: off
# One case a line, so the tables read as tables.
# (case id, body, expected status, text the message must hold). `APP` becomes the BMI
# workflow's id in LinkAI's bodies.
FLOWAI_CASES = [
    ("not-json", b"{not json", 400, "body: not valid JSON"),
    ("trailing-garbage", b'{"input": {}} x', 400, "body: not valid JSON"),
    ("empty-body", b"", 400, "input.height: required"),
    ("null", b"null", 400, "body: must be a JSON object"),
    ("array", b"[1, 2]", 400, "body: must be a JSON object"),
    ("string", b'"run"', 400, "body: must be a JSON object"),
    ("input-array", b'{"input": [1]}', 400, "input: must be a JSON object"),
    ("input-string", b'{"input": "height=2"}', 400, "input: must be a JSON object"),
    ("stream-string", b'{"input": {}, "stream": "yes"}', 400, "stream: must be true or false"),
    ("stream-null", b'{"input": {}, "stream": null}', 400, "stream: must be true or false"),
    ("stream-number", b'{"input": {}, "stream": 1}', 400, "stream: must be true or false"),
    ("session-number", b'{"input": {}, "session_id": 7}', 400, "session_id"),
    ("unknown-field", b'{"inputs": {}}', 400, "inputs: unknown field"),
    ("not-utf8", b"\xff\xfe{}", 400, "not valid UTF-8"),
    ("not-utf8-in-string", b'{"input": {"height": "\xc3\x28"}}', 400, "not valid UTF-8"),
    ("nested-100k", b"[" * 100_000, 400, "nested deeper than"),
    ("nested-object", b'{"input": {"height": ' + DEEP_OBJECT + b"}}", 400, "nested deeper than"),
    ("number-1e999", b'{"input": {"height": 1e999, "weight": 75}}', 400, "input.height"),
    ("nan-literal", b'{"input": {"height": NaN, "weight": 75}}', 400, "NaN"),
    ("int-5000-digits", b'{"input": {"height": ' + HUGE_INT + b', "weight": 75}}', 400, "input.height"),
    ("int-beyond-double", b'{"input": {"height": 2, "weight": ' + BIG_INT + b"}}", 400, "input.weight"),
    ("numeric-string-beyond-double", b'{"input": {"height": 2, "weight": "' + BIG_INT + b'"}}', 400, "input.weight"),
    ("lone-surrogate", b'{"input": {"height": "\\ud800", "weight": 75}}', 400, "surrogate"),
    ("surrogate-key", b'{"input": {"\\udfff": 1}}', 400, "surrogate"),
    ("height-array", b'{"input": {"height": [2], "weight": 75}}', 400, "input.height"),
    ("height-bool", b'{"input": {"height": true, "weight": 75}}', 400, "input.height"),
]

LINKAI_CASES = [
    ("not-json", b"{not json", 400, "body: not valid JSON"),
    ("empty-body", b"", 400, "app_code: required"),
    ("null", b"null", 400, "body: must be a JSON object"),
    ("array", b"[1, 2]", 400, "body: must be a JSON object"),
    ("app-code-number", b'{"app_code": 7}', 400, "app_code: must be a string"),
    ("app-code-null", b'{"app_code": null}', 400, "app_code: required"),
    ("args-array", b'{"app_code": "APP", "args": [1]}', 400, "args: must be a JSON object"),
    ("session-number", b'{"app_code": "APP", "session_id": 7}', 400, "session_id"),
    ("unknown-field", b'{"app_code": "APP", "stream": true}', 400, "stream: unknown field"),
    ("not-utf8", b'{"app_code": "\xff"}', 400, "not valid UTF-8"),
    ("nested-100k", b"[" * 100_000, 400, "nested deeper than"),
    ("nested-object", b'{"app_code": "APP", "args": {"height": ' + DEEP_OBJECT + b"}}", 400, "nested deeper than"),
    ("number-1e999", b'{"app_code": "APP", "args": {"height": 1e999, "weight": 75}}', 400, "args.height"),
    ("int-5000-digits", b'{"app_code": "APP", "args": {"height": ' + HUGE_INT + b"}}", 400, "args.height"),
    ("numeric-string-beyond-double", b'{"app_code": "APP", "args": {"height": "2", "weight": "' + BIG_INT + b'"}}', 400, "input.weight"),
    ("lone-surrogate", b'{"app_code": "APP", "args": {"height": "\\ud800", "weight": "75"}}', 400, "surrogate"),
]

# Typed and management routes: the transcoder parses these bodies, so some messages are Envoy's.
MANAGEMENT_CASES = [
    ("keys-not-json", "POST", "/v1/keys", b"{not json", "key:value"),
    ("keys-null", "POST", "/v1/keys", b"null", "Root element"),
    ("keys-array", "POST", "/v1/keys", b"[1, 2]", "Root element"),
    ("keys-name-number", "POST", "/v1/keys", b'{"name": 5}', "name"),
    ("keys-name-object", "POST", "/v1/keys", b'{"name": {"a": 1}}', "name"),
    ("keys-scopes-numbers", "POST", "/v1/keys", b'{"name": "k", "scopes": [1]}', "scopes"),
    ("keys-unknown-scope", "POST", "/v1/keys", b'{"name": "k", "scopes": ["root"]}', "scopes[0]"),
    ("keys-name-too-long", "POST", "/v1/keys", b'{"name": "' + b"x" * 101 + b'"}', "name"),
    ("keys-not-utf8", "POST", "/v1/keys", b'{"name": "\xff"}', "UTF-8"),
    ("keys-nested-100k", "POST", "/v1/keys", b"[" * 100_000, "too deep"),
    ("keys-number-1e999", "POST", "/v1/keys", b'{"name": 1e999}', "range of double"),
    ("keys-int-5000-digits", "POST", "/v1/keys", b'{"name": ' + HUGE_INT + b"}", "range of double"),
    ("keys-lone-surrogate", "POST", "/v1/keys", b'{"name": "\\ud800"}', "surrogate"),
    ("workflows-empty", "POST", "/v1/workflows", b"", "name: required"),
    ("workflows-array", "POST", "/v1/workflows", b"[1, 2]", "list"),
    ("workflows-name-number", "POST", "/v1/workflows", b'{"name": 5, "nodes": []}', "name"),
    ("workflows-nodes-string", "POST", "/v1/workflows", b'{"name": "x", "nodes": "all"}', "nodes"),
    ("workflows-nested-100k", "POST", "/v1/workflows", b'{"name": ' + b"[" * 100_000, "too deep"),
    ("workflows-int-5000-digits", "POST", "/v1/workflows", b'{"name": "x", "v": ' + HUGE_INT + b"}", "range of double"),
    ("workflows-not-utf8", "POST", "/v1/workflows", b'{"name": "\xc3\x28"}', "UTF-8"),
    ("workflow-put-array", "PUT", "/v1/workflows/{id}", b"[1]", "list"),
    ("workflow-put-null", "PUT", "/v1/workflows/{id}", b"null", "name: required"),
    ("publish-null", "POST", "/v1/workflows/{id}:publish", b"null", "Root element"),
    ("publish-other-id", "POST", "/v1/workflows/{id}:publish", b'{"id": "wf_other"}', "conflicting"),
    ("run-input-array", "POST", "/v1/workflows/{id}:run", b'{"input": [1]}', "list"),
    ("run-session-number", "POST", "/v1/workflows/{id}:run", b'{"session_id": 7}', "session_id"),
    ("run-lone-surrogate", "POST", "/v1/workflows/{id}:run", b'{"input": {"height": "\\ud800"}}', "surrogate"),
]
# fmt: on


def _message(response: httpx.Response, status: int, fields: list[str]) -> str:
    """Asserts a 4xx with `fields` as the JSON body's keys, and returns its message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == set(fields), body
    assert body["code"] == status, body
    message = body["message"]
    assert isinstance(message, str) and message, body
    assert not any(word in message for word in INTERNALS), message
    return message


def _keeps_serving(api: Api, workflow_id: str) -> None:
    response = api.run(workflow_id, {"height": 2, "weight": 80})
    assert response.status_code == 200, response.text
    assert response.json()["output"] == "您的BMI值是20.0"


@pytest.fixture
def bmi(api: Api) -> str:
    return api.publish(BMI)


@pytest.mark.parametrize(
    ("body", "status", "named"),
    [pytest.param(*case[1:], id=case[0]) for case in FLOWAI_CASES],
)
def test_flowai_route(api: Api, bmi: str, body: bytes, status: int, named: str) -> None:
    response = api.http.post(f"/v1/api/workflow/run/{bmi}", content=body, headers=api.headers)

    assert named in _message(response, status, ["code", "message"])
    _keeps_serving(api, bmi)


@pytest.mark.parametrize(
    ("body", "status", "named"),
    [pytest.param(*case[1:], id=case[0]) for case in LINKAI_CASES],
)
def test_linkai_route(api: Api, bmi: str, body: bytes, status: int, named: str) -> None:
    body = body.replace(b"APP", bmi.encode())

    response = api.http.post("/v1/workflow/run", content=body, headers=api.headers)

    envelope = ["success", "code", "message", "data"]
    assert named in _message(response, status, envelope)
    assert list(response.json()) == envelope
    assert response.json()["success"] is False and response.json()["data"] is None
    _keeps_serving(api, bmi)


@pytest.mark.parametrize(
    ("method", "path", "body", "named"),
    [pytest.param(*case[1:], id=case[0]) for case in MANAGEMENT_CASES],
)
def test_management_routes(
    api: Api, bmi: str, method: str, path: str, body: bytes, named: str
) -> None:
    path = path.replace("{id}", bmi)

    response = api.http.request(method, path, content=body, headers=api.headers)

    assert named in _message(response, 400, ["code", "message", "details"])
    # The transcoder's own refusals carry no details; the service's say why in an ErrorInfo.
    details = response.json()["details"]
    reasons = [d["reason"] for d in details if d["@type"].endswith("/google.rpc.ErrorInfo")]
    assert reasons == (["INVALID_ARGUMENT"] if details else []), details
    _keeps_serving(api, bmi)


def test_the_deepest_run_input_accepted_stays_readable(api: Api) -> None:
    """What a run accepts, its record can show: GET /v1/runs answers with a Struct, so the
    body's nesting stops where a Struct's does."""
    workflow_id = api.publish(OBJECT_INPUT)
    deepest = _nested(30)  # the body {"input": {"o": ...}} is then 32 levels deep

    response = api.run(workflow_id, {"o": deepest})

    assert response.status_code == 200, response.text
    record = api.get(f"/v1/runs/{response.json()['run_id']}")
    assert record.status_code == 200, record.text
    assert record.json()["inputs"] == {"o": deepest}
    too_deep = api.run(workflow_id, {"o": {"a": deepest}})
    assert _message(too_deep, 400, ["code", "message"]) == "body: nested deeper than 32 levels"


def test_a_byte_order_mark_is_ignored(api: Api, bmi: str) -> None:
    body = b'\xef\xbb\xbf{"input": {"height": 2, "weight": 80}}'

    response = api.http.post(f"/v1/api/workflow/run/{bmi}", content=body, headers=api.headers)

    assert response.status_code == 200, response.text


# A workflow whose one input takes any JSON object.
OBJECT_INPUT: dict[str, Any] = {
    "name": "object input",
    "nodes": [
        {
            "id": "start",
            "type": "in",
            "name": "in",
            "inputs": [{"name": "o", "type": "object", "required": True}],
        },
        {"id": "end", "type": "out", "name": "out", "output": "ok"},
    ],
    "edges": [{"from": "start", "to": "end"}],
}


def _nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param(
            "POST", "/v1/workflows", b'{"name": "x", "v": ' + DEEP_OBJECT + b"}", id="workflow"
        ),
        pytest.param(
            "POST", "/v1/workflows/{id}:run", b'{"input": ' + DEEP_OBJECT + b"}", id="run"
        ),
    ],
)
def test_deep_struct_bodies_on_transcoded_routes(
    api: Api, bmi: str, method: str, path: str, body: bytes
) -> None:
    response = api.http.request(
        method, path.replace("{id}", bmi), content=body, headers=api.headers
    )

    assert "deep" in _message(response, 400, ["code", "message", "details"])


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("POST", "/v1/api/workflow/run/%ff", id="flowai"),
        pytest.param("GET", "/v1/workflows/%ff", id="workflow"),
        pytest.param("GET", "/v1/runs/%c3%28", id="run"),
    ],
)
def test_paths_that_are_not_utf8(api: Api, method: str, path: str) -> None:
    response = api.http.request(method, path, content=b"{}", headers=api.headers)

    assert 400 <= response.status_code < 500, response.text
    assert not any(word in response.text for word in INTERNALS), response.text


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("GET", "/v1/keys", None, id="keys"),
        pytest.param("POST", "/v1/api/workflow/run/{id}", b'{"input": {"height": 2, "weight": 80}}', id="flowai"),
        pytest.param("POST", "/v1/workflow/run", b'{"app_code": "{id}", "args": {"height": 2, "weight": 80}}', id="linkai"),
    ],
)  # fmt: skip
def test_a_header_name_grpc_cannot_carry_is_ignored(
    api: Api, bmi: str, method: str, path: str, body: bytes | None
) -> None:
    response = api.http.request(
        method,
        path.replace("{id}", bmi),
        content=body.replace(b"{id}", bmi.encode()) if body else None,
        headers={**api.headers, "x-trace&id": "1"},
    )

    assert response.status_code == 200, response.text


def test_linkai_envelope_stays_json_for_any_path(api: Api) -> None:
    """Envoy's own replies on LinkAI's paths are in its envelope, valid JSON even when the
    path holds a quote (HTTP clients escape it; a raw socket need not)."""
    host, port = api.http.base_url.host, api.http.base_url.port
    request = b'POST /v1/workflow/run/a"b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n'
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(request + b"Connection: close\r\n\r\n{}")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")

    assert head.startswith(b"HTTP/1.1 404 "), head
    envelope = httpx.Response(404, content=body).json()
    assert list(envelope) == ["success", "code", "message", "data"]
    assert (envelope["success"], envelope["code"], envelope["data"]) == (False, 404, None)
