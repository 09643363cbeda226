"""Keys and workflows over REST: shapes from docs/api.md, the key shown once, validation, scopes."""

from __future__ import annotations

import copy
import re

from flowport.demo import BMI
from tests.integration.client import Api
from tests.integration.stack import Stack


def test_key_is_shown_once_and_listed_without_its_secret(api: Api) -> None:
    created = api.post("/v1/keys", {"name": "ci", "scopes": ["run"]})

    assert created.status_code == 200, created.text
    key = created.json()
    assert set(key) == {"id", "name", "key", "prefix", "scopes", "created_at", "workflows"}
    assert re.fullmatch(r"fp_[A-Za-z0-9]{32,}", key["key"])
    assert key["key"].startswith(key["prefix"]) and len(key["prefix"]) < len(key["key"])
    assert key["scopes"] == ["run"]

    listed = api.get("/v1/keys").json()["keys"]
    mine = next(item for item in listed if item["id"] == key["id"])
    assert set(mine) >= {"id", "name", "prefix", "scopes", "created_at", "revoked"}
    assert mine["revoked"] is False
    assert key["key"] not in api.get("/v1/keys").text


def test_revoked_key_is_listed_as_revoked(api: Api) -> None:
    key = api.post("/v1/keys", {"name": "old"}).json()

    assert api.http.delete(f"/v1/keys/{key['id']}", headers=api.headers).json() == {}

    listed = {item["id"]: item for item in api.get("/v1/keys").json()["keys"]}
    assert listed[key["id"]]["revoked"] is True
    assert api.get("/v1/keys", headers={"X-API-KEY": key["key"]}).status_code == 401


def test_key_requests_are_validated(api: Api) -> None:
    unknown_scope = api.post("/v1/keys", {"name": "x", "scopes": ["root"]})
    assert unknown_scope.status_code == 400
    problem = "unknown scope 'root' (known: admin, run)"
    assert unknown_scope.json() == {
        "code": 400,
        "message": f"scopes[0]: {problem}",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "INVALID_ARGUMENT",
                "domain": "flowport",
                "metadata": {},
            },
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "field_violations": [{"field": "scopes[0]", "description": problem, "reason": ""}],
            },
        ],
    }
    assert api.post("/v1/keys", {"scopes": ["run"]}).json()["message"] == "name: required"


def test_accounts_do_not_see_each_other(api: Api, stack: Stack) -> None:
    key = api.post("/v1/keys", {"name": "mine"}).json()
    workflow_id = api.publish(BMI)
    _, other = stack.create_key()
    as_other = {"X-API-KEY": other}

    assert key["id"] not in api.get("/v1/keys", headers=as_other).text
    assert api.http.delete(f"/v1/keys/{key['id']}", headers=as_other).status_code == 404
    assert api.get(f"/v1/workflows/{workflow_id}", headers=as_other).status_code == 404
    assert api.get("/v1/workflows", headers=as_other).json()["workflows"] == []


def test_run_only_key_cannot_manage(api: Api) -> None:
    run_key = api.post("/v1/keys", {"name": "runner", "scopes": ["run"]}).json()["key"]

    response = api.get("/v1/keys", headers={"X-API-KEY": run_key})

    assert response.status_code == 403
    assert response.json()["message"] == "this API key lacks the admin scope"


def test_workflow_lifecycle(api: Api) -> None:
    created = api.post("/v1/workflows", BMI)
    assert created.status_code == 200, created.text
    workflow = created.json()
    assert workflow["name"] == "BMI"
    assert workflow["status"] == "draft"
    assert workflow["latest_version"] == 0
    assert workflow["visibility"] == "private"
    assert workflow["definition"] == BMI

    published = api.post(f"/v1/workflows/{workflow['id']}:publish", {})
    assert published.json() == {"id": workflow["id"], "version": 1}

    listed = api.get("/v1/workflows").json()["workflows"]
    assert [
        {k: item[k] for k in ("id", "name", "latest_version", "status", "visibility")}
        for item in listed
    ] == [
        {
            "id": workflow["id"],
            "name": "BMI",
            "latest_version": 1,
            "status": "published",
            "visibility": "private",
        }
    ]


def test_invalid_definitions_are_400_naming_the_problem(api: Api) -> None:
    def broken(change) -> str:
        definition = copy.deepcopy(BMI)
        change(definition)
        response = api.post("/v1/workflows", definition)
        assert response.status_code == 400, response.text
        return response.json()["message"]

    assert "unknown node type 'magic'" in broken(lambda d: d["nodes"][1].update(type="magic"))
    assert "nowhere" in broken(lambda d: d["edges"].append({"from": "calc", "to": "nowhere"}))
    assert "duplicate" in broken(lambda d: d["nodes"][2].update(id="calc"))
    assert "cycle" in broken(lambda d: d["edges"].append({"from": "end", "to": "calc"}))
    assert "nodes[1].template" in broken(lambda d: d["nodes"][1].update(template="{{ oops"))
    assert api.post("/v1/workflows", [1, 2]).status_code == 400


def test_update_of_unknown_workflow_is_404(api: Api) -> None:
    response = api.http.put("/v1/workflows/wf_missing", json=BMI, headers=api.headers)

    assert response.status_code == 404
    assert response.json()["code"] == 404


def test_unknown_route_is_404_json(api: Api) -> None:
    response = api.get("/v1/nothing/here")

    assert response.status_code == 404
    assert response.json()["code"] == 404
