"""Keys are shown once and kept nowhere in clear: not in logs, not in the database files."""

from __future__ import annotations

from pathlib import Path

import grpc

from flowport.demo import BMI
from flowport.v1 import keys_pb2, keys_pb2_grpc
from tests.integration.client import Api
from tests.integration.stack import Stack


def test_keys_never_reach_logs_or_the_database_in_clear(api: Api, stack: Stack) -> None:
    created = api.post("/v1/keys", {"name": "secret-test", "scopes": ["run"]}).json()
    secret = created["key"]
    wrong = secret[:-4] + "XXXX"
    workflow_id = api.publish(BMI)
    for key in (secret, wrong):
        api.run(workflow_id, {"height": 2, "weight": 80}, headers={"X-API-KEY": key})
        api.post(
            "/v1/workflow/run",
            {"app_code": workflow_id},
            headers={"Authorization": f"Bearer {key}"},
        )
        api.get("/v1/keys", headers={"X-API-KEY": key})
    with grpc.insecure_channel(stack.grpc_target) as channel:
        try:
            keys_pb2_grpc.ApiKeysStub(channel).ListApiKeys(
                keys_pb2.ListApiKeysRequest(), metadata=[("x-api-key", wrong)]
            )
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED

    places = [stack.data_dir / "serve.log", stack.data_dir / "envoy.log"]
    places += list(Path(stack.data_dir).glob("flowport.db*"))  # the database, its WAL
    for place in places:
        content = place.read_bytes()
        assert secret.encode() not in content, place
        assert wrong.encode() not in content, place
        assert api.key.encode() not in content, place
    # What is kept is the visible prefix, for recognising the key in lists.
    assert any(created["prefix"].encode() in p.read_bytes() for p in places if "db" in p.name)


def test_another_accounts_run_is_not_found(api: Api, stack: Stack) -> None:
    run_id = api.run(api.publish(BMI), {"height": 2, "weight": 80}).json()["run_id"]
    _, other = stack.create_key()

    response = api.get(f"/v1/runs/{run_id}", headers={"X-API-KEY": other})

    assert response.status_code == 404
    # Nothing of the run is shown: the answer is the same as for an id that never existed.
    missing = api.get("/v1/runs/run_00000000000000000000", headers={"X-API-KEY": other})
    assert response.json()["message"].replace(run_id, "ID") == missing.json()["message"].replace(
        "run_00000000000000000000", "ID"
    )


def test_rotated_limited_and_expiring_keys_are_kept_nowhere_in_clear(
    api: Api, stack: Stack
) -> None:
    workflow_id = api.publish(BMI)
    created = api.post(
        "/v1/keys",
        {"name": "team", "workflows": [workflow_id], "expires_at": "2099-01-01T00:00:00Z"},
    ).json()
    rotated = api.post(f"/v1/keys/{created['id']}:rotate", {"grace_s": 60}).json()
    for key in (created["key"], rotated["key"]):
        api.run(workflow_id, {"height": 2, "weight": 80}, headers={"X-API-KEY": key})
        api.run("wf_elsewhere", {"height": 2, "weight": 80}, headers={"X-API-KEY": key})
    audit = api.get("/v1/audit").text

    places = [stack.data_dir / "serve.log", stack.data_dir / "envoy.log"]
    places += list(Path(stack.data_dir).glob("flowport.db*"))
    for secret in (created["key"], rotated["key"]):
        assert secret not in audit
        for place in places:
            assert secret.encode() not in place.read_bytes(), place
