"""A published workflow describes itself: the JSON Schema of its input and output, and an
OpenAPI document of its own FlowAI and LinkAI calls, which schemathesis fuzzes through Envoy:
bodies the document allows run, bodies it forbids are 4xx naming the field, nothing is 5xx."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation import GenerationMode

from flowport.demo import BMI
from tests.integration.client import Api
from tests.integration.stack import Stack

# Every kind of input the fuzzer can make without a file server: text with a bound, a number,
# an optional boolean and an optional object.
PROFILE = {
    "name": "Profile",
    "description": "Greets a member.",
    "nodes": [
        {
            "id": "start",
            "type": "in",
            "inputs": [
                {"name": "name", "type": "text", "required": True, "max_length": 20,
                 "description": "Who to greet"},
                {"name": "age", "type": "number", "required": True},
                {"name": "vip", "type": "boolean", "default": False},
                {"name": "extra", "type": "object"},
            ],
        },
        {"id": "end", "type": "out", "output": "{{ name }} is {{ age }}, vip {{ vip }}"},
    ],
    "edges": [{"from": "start", "to": "end"}],
}  # fmt: skip

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 20_261_207,
        "generation": {"mode": "all", "deterministic": True, "database": "none"},
        "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
    }
)
# A few dozen cases per route: enough to walk every input's kinds, short enough for make test.
EXAMPLES_PER_OPERATION = 30
# `<field>: <problem>`, the form of every 400 (`input.age: expected a number, got "x"`).
NAMES_A_FIELD = re.compile(r"^[\w.\[\]-]*: ")


def test_the_schema_says_what_input_validation_accepts(api: Api) -> None:
    workflow_id = api.publish(PROFILE)
    answer = api.get(f"/v1/workflows/{workflow_id}/schema")
    assert answer.status_code == 200, answer.text
    schema = answer.json()
    assert schema["version"] == 1
    assert schema["output"] == {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "string",
        "description": "The text of the out node 'end' (end).",
    }
    inputs = schema["input"]
    assert inputs["required"] == ["name", "age"] and inputs["additionalProperties"] is False
    assert inputs["properties"]["name"] == {
        "type": "string",
        "maxLength": 20,
        "description": "Who to greet",
        "x-flowport-type": "text",
    }
    age = inputs["properties"]["age"]["anyOf"]
    assert age[0]["type"] == "number" and age[1]["type"] == "string"
    assert inputs["properties"]["vip"]["default"] is False
    assert {"type": "null"} in inputs["properties"]["extra"]["anyOf"]


def test_a_schema_per_version(api: Api) -> None:
    workflow_id = api.publish(BMI)
    second = {**PROFILE, "name": "BMI"}
    assert (
        api.http.put(f"/v1/workflows/{workflow_id}", json=second, headers=api.headers).status_code
        == 200
    )
    assert api.post(f"/v1/workflows/{workflow_id}:publish", {}).status_code == 200
    newest = api.get(f"/v1/workflows/{workflow_id}/schema").json()
    first = api.get(f"/v1/workflows/{workflow_id}/schema?version=1").json()
    assert newest["version"] == 2 and "name" in newest["input"]["properties"]
    assert first["version"] == 1 and set(first["input"]["properties"]) == {"height", "weight"}
    missing = api.get(f"/v1/workflows/{workflow_id}/schema?version=7")
    assert missing.status_code == 404
    assert missing.json()["message"] == f"workflow {workflow_id} has no published version 7"
    assert api.get(f"/v1/workflows/{workflow_id}/schema?version=-1").status_code == 400
    assert api.get("/v1/workflows/wf_missing/schema").status_code == 404


def test_who_may_read_a_workflows_description(stack: Stack, api: Api) -> None:
    private = api.publish(BMI)
    public = api.publish({**BMI, "visibility": "public"})
    other = api.publish(BMI)
    # A key that may only run, and only `private`.
    runner = api.post("/v1/keys", {"name": "r", "scopes": ["run"], "workflows": [private]}).json()
    with Api(stack.base_url, runner["key"]) as limited:
        for route in ("schema", "openapi.json", "snippets"):
            assert limited.get(f"/v1/workflows/{private}/{route}").status_code == 200
            refused = limited.get(f"/v1/workflows/{other}/{route}")
            assert refused.status_code == 403
            assert refused.json()["message"] == f"this API key may not run workflow {other}"
            # Whether a workflow exists is not told to a key limited to others.
            assert limited.get(f"/v1/workflows/wf_missing/{route}").status_code == 403
    _, stranger_key = stack.create_key()
    with Api(stack.base_url, stranger_key) as stranger:
        assert stranger.get(f"/v1/workflows/{private}/schema").status_code == 403
        assert stranger.get(f"/v1/workflows/{public}/schema").status_code == 200
    assert api.get(f"/v1/workflows/{private}/schema", headers={}).status_code == 401


def test_the_openapi_document_is_valid_and_names_the_workflows_calls(api: Api) -> None:
    workflow_id = api.publish(PROFILE)
    assert api.post(f"/v1/workflows/{workflow_id}/aliases/prod", {"version": 1}).status_code == 200
    answer = api.get(f"/v1/workflows/{workflow_id}/openapi.json")
    assert answer.status_code == 200, answer.text
    # The body is the document itself, not a message wrapping it.
    assert answer.headers["content-type"] == "application/json"
    document = answer.json()
    validate(document)
    assert document["info"]["title"] == "Profile" and document["info"]["version"] == "1"
    assert set(document["paths"]) == {f"/v1/api/workflow/run/{workflow_id}", "/v1/workflow/run"}
    flowai = document["paths"][f"/v1/api/workflow/run/{workflow_id}"]["post"]
    body = flowai["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["version"]["enum"] == [1, "prod", None]
    assert set(flowai["responses"]) >= {"200", "400", "401", "403", "404", "429", "5XX"}
    assert "text/event-stream" in flowai["responses"]["200"]["content"]
    linkai = document["paths"]["/v1/workflow/run"]["post"]
    assert set(linkai["responses"]) >= {"200", "402", "406", "408"}


@pytest.fixture
def profile(stack: Stack, api: Api) -> tuple[str, str, Iterator[str], Any]:
    """A published PROFILE with an alias, the fuzzer's schema of its document, and keys."""
    workflow_id = api.publish(PROFILE)
    assert api.post(f"/v1/workflows/{workflow_id}/aliases/prod", {"version": 1}).status_code == 200
    document = api.get(f"/v1/workflows/{workflow_id}/openapi.json").json()
    # Keys of the account in turn: the fuzzer's pace stays under the per-key rate limit.
    keys = itertools.cycle([api.key, *(stack.create_key(account=api.account)[1] for _ in range(3))])
    return (
        stack.base_url,
        workflow_id,
        keys,
        schemathesis.openapi.from_dict(document, config=CONFIG),
    )


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
@pytest.mark.parametrize("route", ["flowai", "linkai"])
def test_fuzzed_calls_run_or_are_refused_naming_the_field(
    profile: tuple[str, str, Iterator[str], Any], route: str, mode: GenerationMode
) -> None:
    base_url, workflow_id, keys, schema = profile
    path = f"/v1/api/workflow/run/{workflow_id}" if route == "flowai" else "/v1/workflow/run"
    operation = schema[path]["POST"]
    seen: list[int] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def call(case: schemathesis.Case) -> None:
        response = case.call(base_url=base_url, headers={"X-API-KEY": next(keys)}, timeout=30)
        seen.append(response.status_code)
        assert response.status_code < 500, (case.body, response.text)
        if mode == GenerationMode.POSITIVE:
            assert response.status_code in (200, 202), (case.body, response.text)
            assert "x-workflow-version" in response.headers
            if route == "linkai":
                assert response.json()["success"] is True, response.text
            return
        body = case.meta.components.get(ParameterLocation.BODY) if case.meta else None
        if body is None or body.mode != GenerationMode.NEGATIVE:
            # Something else was made invalid (the Content-Type, which the service does not
            # read: the body is JSON whatever it says).
            return
        # A body the document forbids is refused; a 400 names the field at fault.
        assert 400 <= response.status_code < 500, (case.body, response.text)
        if response.status_code == 400:
            message = response.json()["message"]
            assert NAMES_A_FIELD.match(message), (case.body, message)

    call()
    # The fuzzer did reach the service, with many cases.
    assert len(seen) >= EXAMPLES_PER_OPERATION // 2, seen


def test_an_older_versions_document_has_its_calls_name_it(api: Api) -> None:
    workflow_id = api.publish(BMI)
    assert (
        api.post(f"/v1/workflows/{workflow_id}/aliases/stable", {"version": 1}).status_code == 200
    )
    saved = api.http.put(f"/v1/workflows/{workflow_id}", json=PROFILE, headers=api.headers)
    assert saved.status_code == 200
    assert api.post(f"/v1/workflows/{workflow_id}:publish", {}).status_code == 200

    def body(query: str) -> dict[str, Any]:
        document = api.get(f"/v1/workflows/{workflow_id}/openapi.json{query}").json()
        operation = document["paths"][f"/v1/api/workflow/run/{workflow_id}"]["post"]
        return dict(operation["requestBody"]["content"]["application/json"]["schema"])

    # The newest may be run without naming it; version 1 (BMI's inputs) only by name.
    newest, older = body(""), body("?version=1")
    assert newest["properties"]["version"]["enum"] == [2, None]
    assert "version" not in newest["required"]
    assert older["properties"]["version"]["enum"] == [1, "stable"]
    assert "version" in older["required"]
    # Its inputs are version 1's: a call as its document describes it runs.
    ran = api.run(workflow_id, {"height": 2, "weight": 80}, version="stable")
    assert ran.status_code == 200 and ran.headers["x-workflow-version"] == "1"
