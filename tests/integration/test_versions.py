"""Versions and aliases: a run call pins a version number or an alias, every answer says which
version ran, and moving an alias (a rollback is moving it back) changes what its callers run at
once, on every replica, with the move in the audit log."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format, struct_pb2

from flowport.convert import struct
from flowport.demo import BMI
from flowport.v1 import runner_pb2, runner_pb2_grpc
from tests.integration.client import Api, linkai_failure
from tests.integration.stack import Stack, wait_for

BMI_INPUT = {"height": 2, "weight": 80}


def _second_version(api: Api, workflow_id: str, label: str) -> int:
    """Saves a draft whose output starts with `label`, and publishes it."""
    nodes = [dict(node) for node in BMI["nodes"]]
    nodes[-1]["output"] = label + " {{ calc.output }}"
    saved = api.http.put(
        f"/v1/workflows/{workflow_id}", json={**BMI, "nodes": nodes}, headers=api.headers
    )
    assert saved.status_code == 200, saved.text
    published = api.post(f"/v1/workflows/{workflow_id}:publish", {})
    assert published.status_code == 200, published.text
    return int(published.json()["version"])


def _ran(response: httpx.Response) -> tuple[int, str]:
    """The version FlowAI's answer says ran, and the output."""
    assert response.status_code == 200, response.text
    return int(response.headers["x-workflow-version"]), response.json()["output"]


def _pin(value: int | str) -> struct_pb2.Value:
    return json_format.ParseDict(value, struct_pb2.Value())


@pytest.fixture
def two_versions(api: Api) -> str:
    """BMI published twice: version 1 answers 您的BMI值是20.0, version 2 `v2 20.0`."""
    workflow_id = api.publish(BMI)
    assert _second_version(api, workflow_id, "v2") == 2
    return workflow_id


def test_unpinned_calls_run_the_newest_and_pins_choose(api: Api, two_versions: str) -> None:
    workflow_id = two_versions
    assert _ran(api.run(workflow_id, BMI_INPUT)) == (2, "v2 20.0")
    assert _ran(api.run(workflow_id, BMI_INPUT, version=1)) == (1, "您的BMI值是20.0")
    # A number as a string (callers whose JSON is all strings), and null for the newest.
    assert _ran(api.run(workflow_id, BMI_INPUT, version="1"))[0] == 1
    assert _ran(api.run(workflow_id, BMI_INPUT, version=None))[0] == 2

    # The run record says which version ran.
    run_id = api.run(workflow_id, BMI_INPUT, version=1).json()["run_id"]
    assert api.get(f"/v1/runs/{run_id}").json()["version"] == 1

    # Streams and background runs say it too, in the same header.
    with api.stream(workflow_id, BMI_INPUT, version=1) as sse:
        assert sse.response.headers["x-workflow-version"] == "1"
        frames = [(frame.event, json.loads(frame.data)) for frame in sse.iter_sse()]
    assert frames[-1] == ("output", {**frames[-1][1], "output": "您的BMI值是20.0"})
    queued = api.run(workflow_id, BMI_INPUT, version=1, mode="async")
    assert queued.status_code == 202 and queued.headers["x-workflow-version"] == "1"
    assert api.get(f"/v1/runs/{queued.json()['run_id']}").json()["version"] == 1

    # LinkAI's route pins the same way.
    linkai = api.linkai({"app_code": workflow_id, "args": BMI_INPUT, "version": 1})
    assert linkai.status_code == 200 and linkai.headers["x-workflow-version"] == "1"
    assert linkai.json()["data"]["output_text"] == "您的BMI值是20.0"


def test_an_alias_moves_and_rolls_back(stack: Stack, api: Api, two_versions: str) -> None:
    workflow_id = two_versions
    moved = api.post(f"/v1/workflows/{workflow_id}/aliases/prod", {"version": 1})
    assert moved.status_code == 200, moved.text
    assert moved.json() == {"name": "prod", "version": 1}
    assert _ran(api.run(workflow_id, BMI_INPUT, version="prod")) == (1, "您的BMI值是20.0")

    # Moved forward, then rolled back: each move counts from the next call on.
    assert api.post(f"/v1/workflows/{workflow_id}/aliases/prod", {"version": 2}).status_code == 200
    assert _ran(api.run(workflow_id, BMI_INPUT, version="prod")) == (2, "v2 20.0")
    assert api.post(f"/v1/workflows/{workflow_id}/aliases/prod", {"version": 1}).status_code == 200
    assert _ran(api.run(workflow_id, BMI_INPUT, version="prod")) == (1, "您的BMI值是20.0")
    # An unpinned call still runs the newest.
    assert _ran(api.run(workflow_id, BMI_INPUT))[0] == 2

    # LinkAI, gRPC and the typed REST routes take the alias, and a number, alike.
    linkai = api.linkai({"app_code": workflow_id, "args": BMI_INPUT, "version": "prod"})
    assert linkai.json()["data"]["output_text"] == "您的BMI值是20.0"
    with stack.grpc_channel() as channel:
        runner = runner_pb2_grpc.WorkflowRunnerStub(channel)
        metadata = [("x-api-key", api.key)]
        for pin, version in (("prod", 1), (2, 2)):
            request = runner_pb2.RunRequest(
                workflow_id=workflow_id, input=struct(BMI_INPUT), version=_pin(pin)
            )
            answer = runner.Run(request, metadata=metadata)
            assert answer.version == version
            stream = runner_pb2.RunStreamRequest(
                workflow_id=workflow_id, input=struct(BMI_INPUT), version=_pin(pin)
            )
            first = next(iter(runner.RunStream(stream, metadata=metadata)))
            assert first.run_started.version == version
    for pin, version in (("prod", 1), (2, 2)):
        typed = api.post(f"/v1/workflows/{workflow_id}:run", {"input": BMI_INPUT, "version": pin})
        assert typed.status_code == 200, typed.text
        assert typed.json()["version"] == version

    # Each move is in the audit log, with where the alias pointed before.
    events = api.get("/v1/audit").json()["events"]
    moves = [e["detail"] for e in events if e["action"] == "workflow.alias_moved"]
    assert moves == [
        {"name": "prod", "version": 1, "previous_version": 2},
        {"name": "prod", "version": 2, "previous_version": 1},
        {"name": "prod", "version": 1, "previous_version": None},
    ]
    assert {e["target"] for e in events if e["action"] == "workflow.alias_moved"} == {workflow_id}


def test_pins_that_name_nothing_are_refused(stack: Stack, api: Api, two_versions: str) -> None:
    workflow_id = two_versions
    missing = api.run(workflow_id, BMI_INPUT, version=9)
    assert missing.status_code == 404
    assert missing.json() == {
        "code": 404,
        "message": f"workflow {workflow_id} has no published version 9",
    }
    unknown = api.run(workflow_id, BMI_INPUT, version="canary")
    assert unknown.status_code == 404
    assert unknown.json()["message"] == f"workflow {workflow_id} has no alias canary"
    linkai = api.linkai({"app_code": workflow_id, "args": BMI_INPUT, "version": "canary"})
    assert linkai_failure(linkai, 402) == f"workflow {workflow_id} has no alias canary"
    with stack.grpc_channel() as channel, pytest.raises(grpc.RpcError) as raised:
        runner_pb2_grpc.WorkflowRunnerStub(channel).Run(
            runner_pb2.RunRequest(workflow_id=workflow_id, version=_pin(9)),
            metadata=[("x-api-key", api.key)],
        )
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND

    # A malformed pin is a 400 naming the field.
    for bad in (0, -1, 1.5, True, "two words", "1x", ["prod"], {"v": 1}):
        refused = api.run(workflow_id, BMI_INPUT, version=bad)
        assert refused.status_code == 400, (bad, refused.text)
        assert refused.json()["message"].startswith("version: "), refused.text

    # An alias may only point at a published version, with a well-formed name.
    unpublished = api.post(f"/v1/workflows/{workflow_id}/aliases/prod", {"version": 3})
    assert unpublished.status_code == 404
    assert unpublished.json()["message"] == f"workflow {workflow_id} has no published version 3"
    bad_name = api.post(f"/v1/workflows/{workflow_id}/aliases/1st", {"version": 1})
    assert bad_name.status_code == 400 and bad_name.json()["message"].startswith("name: ")
    assert api.post(f"/v1/workflows/{workflow_id}/aliases/prod", {"version": 0}).status_code == 400
    assert api.post("/v1/workflows/wf_missing/aliases/prod", {"version": 1}).status_code == 404


def test_other_accounts_learn_nothing_of_versions(
    stack: Stack, api: Api, two_versions: str
) -> None:
    workflow_id = two_versions
    assert api.post(f"/v1/workflows/{workflow_id}/aliases/prod", {"version": 1}).status_code == 200
    _, stranger_key = stack.create_key()
    with Api(stack.base_url, stranger_key) as stranger:
        # The private workflow is 403 whatever the pin names, existing or not.
        for pin in (1, 9, "prod", "canary"):
            assert stranger.run(workflow_id, BMI_INPUT, version=pin).status_code == 403
        # Nor may another account move its aliases: to it the workflow does not exist.
        moved = stranger.post(f"/v1/workflows/{workflow_id}/aliases/prod", {"version": 2})
        assert moved.status_code == 404
    assert _ran(api.run(workflow_id, BMI_INPUT, version="prod"))[0] == 1


# -- two replicas on one PostgreSQL database ---------------------------------------------------


@pytest.fixture
def replicas(tmp_path: Path, database: str) -> Iterator[tuple[Stack, Stack]]:
    # The test polls b as fast as it answers: no rate limit in its way.
    a, b = (
        Stack(
            data_dir=tmp_path / n,
            database_url=database,
            llm_base_url=None,
            extra_env={"FLOWPORT_RATE_LIMIT_PER_KEY": "1000"},
        )
        for n in "ab"
    )
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        for replica in (a, b):
            replica.stop()


@pytest.mark.postgres
def test_an_alias_moved_on_one_replica_is_what_the_other_runs(
    replicas: tuple[Stack, Stack],
) -> None:
    a, b = replicas
    _, key = a.create_key()
    with Api(a.base_url, key) as on_a, Api(b.base_url, key) as on_b:
        workflow_id = on_a.publish(BMI)
        _second_version(on_a, workflow_id, "v2")
        moves: list[dict[str, Any]] = []
        for version in (2, 1, 2):

            def b_runs(version: int = version) -> bool:
                return _ran(on_b.run(workflow_id, BMI_INPUT, version="prod"))[0] == version

            moved = on_a.post(f"/v1/workflows/{workflow_id}/aliases/prod", {"version": version})
            assert moved.status_code == 200, moved.text
            moves.append(moved.json())
            # b held the alias in its cache from the call before; it hears of the move on the
            # replicas' channel (the catalog's one-second cache is the bound without one).
            wait_for(
                b_runs,
                timeout_s=5,
                what=f"b running version {version} for prod",
            )
            # And keeps to it: no stale entry comes back.
            for _ in range(3):
                assert _ran(on_b.run(workflow_id, BMI_INPUT, version="prod"))[0] == version
        assert moves[-1] == {"name": "prod", "version": 2}
        # The audit log is one, whichever replica answers.
        events = on_b.get("/v1/audit").json()["events"]
        assert [
            e["detail"]["version"] for e in events if e["action"] == "workflow.alias_moved"
        ] == [
            2,
            1,
            2,
        ]


def test_a_repeated_call_says_the_version_its_run_ran(api: Api, two_versions: str) -> None:
    workflow_id = two_versions
    headers = {**api.headers, "Idempotency-Key": f"pin-{uuid.uuid4().hex}"}
    first = api.run(workflow_id, BMI_INPUT, headers=headers, version=1)
    # A version published in between changes nothing for the repeat: it is the same run.
    _second_version(api, workflow_id, "v3")
    again = api.run(workflow_id, BMI_INPUT, headers=headers, version=1)
    assert again.json()["run_id"] == first.json()["run_id"]
    assert _ran(again) == (1, "您的BMI值是20.0")
    linkai_key = f"pin-{uuid.uuid4().hex}"
    body = {"app_code": workflow_id, "args": BMI_INPUT}
    for _ in range(2):
        answer = api.http.post(
            "/v1/workflow/run",
            json=body,
            headers={"Authorization": f"Bearer {api.key}", "Idempotency-Key": linkai_key},
        )
        assert answer.status_code == 200 and answer.headers["x-workflow-version"] == "3"
