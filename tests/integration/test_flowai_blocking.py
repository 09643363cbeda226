"""FlowAI's route, blocking: the answer, every error before a run, and the run's record."""

from __future__ import annotations

import copy

import httpx

from flowport.demo import BMI
from tests.integration.client import Api
from tests.integration.stack import Stack


def test_bmi_answers_like_flowai(api: Api) -> None:
    workflow_id = api.publish(BMI)

    response = api.run(workflow_id, {"height": "1.8", "weight": 75})

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["output", "total_time", "run_id"]
    assert body["output"] == "您的BMI值是23.15"
    assert body["total_time"] > 0
    # The exact bytes: compact JSON, Chinese unescaped, as FlowAI writes it.
    assert response.content.startswith('{"output":"您的BMI值是23.15","total_time":'.encode())
    assert not any(name.startswith("grpc-") for name in response.headers)


def test_bearer_header_works_too(api: Api) -> None:
    workflow_id = api.publish(BMI)

    response = api.run(
        workflow_id, {"height": 1.8, "weight": 75}, headers={"Authorization": f"Bearer {api.key}"}
    )

    assert response.status_code == 200, response.text
    assert response.json()["output"] == "您的BMI值是23.15"


def test_run_is_recorded_with_every_node(api: Api) -> None:
    workflow_id = api.publish(BMI)
    run_id = api.run(workflow_id, {"height": "1.8", "weight": "75"}).json()["run_id"]

    record = api.get(f"/v1/runs/{run_id}")

    assert record.status_code == 200, record.text
    run = record.json()
    assert run["status"] == "succeeded"
    assert run["workflow_id"] == workflow_id
    assert run["version"] == 1
    assert run["inputs"] == {"height": 1.8, "weight": 75}
    assert run["output"] == "您的BMI值是23.15"
    assert run["total_time"] > 0
    assert [node["node_id"] for node in run["nodes"]] == ["start", "calc", "end"]
    assert all(node["status"] == "succeeded" for node in run["nodes"])
    assert all(node["time_spend"] >= 0 for node in run["nodes"])
    assert run["nodes"][1]["output"]["output"] == "23.15"


def test_newest_published_version_runs(api: Api) -> None:
    workflow_id = api.publish(BMI)
    changed = copy.deepcopy(BMI)
    changed["nodes"][2]["output"] = "BMI={{ calc.output }}"

    saved = api.http.put(f"/v1/workflows/{workflow_id}", json=changed, headers=api.headers)
    assert saved.status_code == 200, saved.text
    # A saved draft changes nothing until it is published.
    assert api.run(workflow_id, {"height": 2, "weight": 80}).json()["output"] == "您的BMI值是20.0"

    published = api.post(f"/v1/workflows/{workflow_id}:publish", {})
    assert published.json() == {"id": workflow_id, "version": 2}
    assert api.run(workflow_id, {"height": 2, "weight": 80}).json()["output"] == "BMI=20.0"


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["code", "message"]
    assert body["code"] == status
    return body["message"]


def test_missing_input_is_400_naming_the_field(api: Api) -> None:
    workflow_id = api.publish(BMI)

    message = _error(api.run(workflow_id, {"height": 1.8}), 400)

    assert "weight" in message and "required" in message


def test_wrong_input_type_is_400_naming_the_field(api: Api) -> None:
    workflow_id = api.publish(BMI)

    message = _error(api.run(workflow_id, {"height": "tall", "weight": 75}), 400)

    assert "height" in message and "number" in message


def test_malformed_bodies_are_400_and_the_service_keeps_serving(api: Api) -> None:
    workflow_id = api.publish(BMI)
    path = f"/v1/api/workflow/run/{workflow_id}"
    cases = {
        b"{not json": "JSON",
        b"[1, 2]": "object",
        b'{"input": [1]}': "input",
        b'{"input": {}, "stream": "yes"}': "stream",
        b'{"inputs": {}}': "inputs",
        b"\xff\xfe{}": "UTF-8",
    }
    for body, named in cases.items():
        response = api.http.post(path, content=body, headers=api.headers)
        assert named in _error(response, 400), body

    assert api.run(workflow_id, {"height": 2, "weight": 80}).status_code == 200


def test_missing_unknown_and_revoked_keys_are_401(api: Api, stack: Stack) -> None:
    workflow_id = api.publish(BMI)
    path = f"/v1/api/workflow/run/{workflow_id}"
    body = {"input": {"height": 2, "weight": 80}}

    assert "missing" in _error(api.http.post(path, json=body), 401)
    wrong = {"X-API-KEY": "fp_" + "x" * 32}
    assert _error(api.http.post(path, json=body, headers=wrong), 401) == "invalid API key"

    created = api.post("/v1/keys", {"name": "short-lived", "scopes": ["run"]}).json()
    as_new_key = {"X-API-KEY": created["key"]}
    assert api.http.post(path, json=body, headers=as_new_key).status_code == 200
    assert api.http.delete(f"/v1/keys/{created['id']}", headers=api.headers).status_code == 200
    assert _error(api.http.post(path, json=body, headers=as_new_key), 401) == "invalid API key"


def test_unknown_or_unpublished_workflow_is_404(api: Api) -> None:
    assert "wf_nothere" in _error(api.run("wf_nothere", {}), 404)

    draft = api.post("/v1/workflows", BMI).json()["id"]
    _error(api.run(draft, {"height": 2, "weight": 80}), 404)


def test_private_workflow_of_another_account_is_403(api: Api, stack: Stack) -> None:
    workflow_id = api.publish(BMI)
    _, other_key = stack.create_key()

    response = api.run(workflow_id, {"height": 2, "weight": 80}, headers={"X-API-KEY": other_key})

    assert "private" in _error(response, 403)


def test_public_workflow_runs_for_any_key(api: Api, stack: Stack) -> None:
    workflow_id = api.publish({**BMI, "visibility": "public"})
    _, other_key = stack.create_key(scopes=("run",))

    response = api.run(workflow_id, {"height": 2, "weight": 80}, headers={"X-API-KEY": other_key})

    assert response.status_code == 200, response.text


def test_a_node_failing_is_a_5xx_naming_the_node(api: Api) -> None:
    workflow_id = api.publish(BMI)

    message = _error(api.run(workflow_id, {"height": 0, "weight": 80}), 500)

    assert "calc" in message
