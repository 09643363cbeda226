"""Keys for teams through the real stack: keys that expire, keys limited to some workflows,
rotation with a grace, on FlowAI's and LinkAI's routes and gRPC directly and through Envoy;
and the audit log of every administrative change."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import struct_pb2

from flowport.demo import BMI, CHAT
from flowport.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    keys_pb2,
    keys_pb2_grpc,
    runner_pb2,
    runner_pb2_grpc,
)
from tests.integration.client import Api, linkai_failure
from tests.integration.stack import Stack

BMI_INPUT = {"height": 1.8, "weight": 75}
SURFACES = ["flowai", "flowai-stream", "linkai", "grpc-direct", "grpc-envoy", "grpc-stream"]


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _struct(values: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


def _sleep_until(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()) + 0.05)


def attempt(stack: Stack, surface: str, key: str, workflow_id: str) -> tuple[int, str]:
    """Runs the BMI workflow (or whatever `workflow_id` is) with `key` on `surface`: the REST
    status (gRPC: the status code's name) and the error message, or (200, "")."""
    match surface:
        case "flowai" | "flowai-stream" as route:
            with Api(stack.base_url, key) as api:
                if route == "flowai":
                    response = api.run(workflow_id, BMI_INPUT)
                    return response.status_code, response.json().get("message", "")
                with api.stream(workflow_id, BMI_INPUT) as source:
                    if source.response.status_code != 200:
                        source.response.read()
                        return source.response.status_code, source.response.json()["message"]
                    frames = list(source.iter_sse())
                    assert frames[-1].event == "output", frames
                    return 200, ""
        case "linkai":
            response = httpx.post(
                f"{stack.base_url}/v1/workflow/run",
                json={"app_code": workflow_id, "args": BMI_INPUT},
                headers={"Authorization": f"Bearer {key}"},
            )
            if response.status_code == 200:
                return 200, ""
            return response.status_code, linkai_failure(response, response.status_code)
        case "grpc-direct" | "grpc-envoy" | "grpc-stream":
            target = stack.envoy_target if surface == "grpc-envoy" else stack.grpc_target
            metadata = [("x-api-key", key)]
            with grpc.insecure_channel(target) as channel:
                runner = runner_pb2_grpc.WorkflowRunnerStub(channel)
                try:
                    if surface == "grpc-stream":
                        request = runner_pb2.RunStreamRequest(
                            workflow_id=workflow_id, input=_struct(BMI_INPUT)
                        )
                        events = list(runner.RunStream(request, metadata=metadata))
                        assert events[-1].WhichOneof("event") == "output", events
                    else:
                        runner.Run(
                            runner_pb2.RunRequest(
                                workflow_id=workflow_id, input=_struct(BMI_INPUT)
                            ),
                            metadata=metadata,
                        )
                except grpc.RpcError as error:
                    return error.code().name, error.details() or ""
                return 200, ""
    raise AssertionError(surface)


UNAUTHENTICATED = {401, "UNAUTHENTICATED"}
DENIED = {403, "PERMISSION_DENIED"}


@pytest.fixture
def team(api: Api) -> Iterator[dict[str, str]]:
    """Two workflows of the account, and a run key limited to the first."""
    allowed = api.publish(BMI)
    other = api.publish({**BMI, "name": "BMI 2"})
    created = api.post("/v1/keys", {"name": "team", "scopes": ["run"], "workflows": [allowed]})
    assert created.status_code == 200, created.text
    yield {
        "allowed": allowed,
        "other": other,
        "key": created.json()["key"],
        "id": created.json()["id"],
    }


def test_a_key_with_an_expiry_and_a_list_shows_both(api: Api, team: dict[str, str]) -> None:
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=7)

    created = api.post(
        "/v1/keys",
        {
            "name": "ci",
            "scopes": ["run"],
            "expires_at": _rfc3339(expires),
            "workflows": [team["allowed"]],
        },
    )

    assert created.status_code == 200, created.text
    body = created.json()
    assert set(body) == {
        "id",
        "name",
        "key",
        "prefix",
        "scopes",
        "created_at",
        "expires_at",
        "workflows",
    }
    assert _parse(body["expires_at"]) == expires
    assert body["workflows"] == [team["allowed"]]
    listed = {k["id"]: k for k in api.get("/v1/keys").json()["keys"]}
    assert _parse(listed[body["id"]]["expires_at"]) == expires
    assert listed[body["id"]]["workflows"] == [team["allowed"]]
    # A key without either never expires and runs everything: no expires_at, an empty list.
    assert "expires_at" not in listed[team["id"]] or team["id"] != body["id"]
    mine = next(k for k in listed.values() if api.key.startswith(k["prefix"]))
    assert "expires_at" not in mine and mine["workflows"] == []


@pytest.mark.parametrize("surface", SURFACES)
def test_a_key_runs_only_its_workflows_and_never_tells_whether_others_exist(
    surface: str, stack: Stack, team: dict[str, str]
) -> None:
    assert attempt(stack, surface, team["key"], team["allowed"]) == (200, "")

    other = attempt(stack, surface, team["key"], team["other"])
    missing = attempt(stack, surface, team["key"], "wf_doesnotexist")

    assert other[0] in DENIED and missing[0] == other[0]
    assert other[1] == f"this API key may not run workflow {team['other']}"
    assert missing[1] == "this API key may not run workflow wf_doesnotexist"


@pytest.mark.parametrize("surface", SURFACES)
def test_an_expired_key_is_401_api_key_expired_even_while_cached(
    surface: str, stack: Stack, api: Api
) -> None:
    workflow_id = api.publish(BMI)
    expires = datetime.now(UTC) + timedelta(seconds=2)
    created = api.post("/v1/keys", {"name": "short", "expires_at": _rfc3339(expires)})
    key = created.json()["key"]
    # Used, so the service holds it in its cache of keys.
    assert attempt(stack, surface, key, workflow_id) == (200, "")

    _sleep_until(expires)

    status, message = attempt(stack, surface, key, workflow_id)
    assert status in UNAUTHENTICATED and message == "API key expired"
    # Nor for a workflow that does not exist, nor for management.
    assert attempt(stack, surface, key, "wf_doesnotexist")[1] == "API key expired"
    refused = httpx.get(f"{stack.base_url}/v1/runs/run_x", headers={"X-API-KEY": key})
    assert (refused.status_code, refused.json()["message"]) == (401, "API key expired")


def test_rotation_without_grace_swaps_the_secret_at_once(api: Api, stack: Stack) -> None:
    workflow_id = api.publish(BMI)
    old = api.post("/v1/keys", {"name": "svc"}).json()
    assert attempt(stack, "flowai", old["key"], workflow_id) == (200, "")

    rotated = api.post(f"/v1/keys/{old['id']}:rotate", {})

    assert rotated.status_code == 200, rotated.text
    new = rotated.json()
    assert new["id"] == old["id"] and new["name"] == "svc" and new["scopes"] == ["run"]
    assert new["key"] != old["key"] and new["key"].startswith(new["prefix"])
    assert "previous_key_expires_at" not in new
    assert attempt(stack, "flowai", new["key"], workflow_id) == (200, "")
    for surface in ("flowai", "linkai", "grpc-direct", "grpc-envoy"):
        status, message = attempt(stack, surface, old["key"], workflow_id)
        assert status in UNAUTHENTICATED and message == "invalid API key", surface
    assert new["key"] not in api.get("/v1/keys").text


def test_rotation_with_grace_keeps_the_old_secret_until_the_grace_ends(
    api: Api, stack: Stack
) -> None:
    workflow_id = api.publish(BMI)
    old = api.post("/v1/keys", {"name": "svc"}).json()
    assert attempt(stack, "grpc-direct", old["key"], workflow_id) == (200, "")

    new = api.post(f"/v1/keys/{old['id']}:rotate", {"grace_s": 3}).json()

    until = _parse(new["previous_key_expires_at"])
    assert timedelta(0) < until - datetime.now(UTC) <= timedelta(seconds=3)
    listed = {k["id"]: k for k in api.get("/v1/keys").json()["keys"]}
    assert _parse(listed[old["id"]]["previous_key_expires_at"]) == until
    for surface in ("flowai", "grpc-direct"):
        assert attempt(stack, surface, old["key"], workflow_id) == (200, "")
        assert attempt(stack, surface, new["key"], workflow_id) == (200, "")

    _sleep_until(until)

    for surface in ("flowai", "linkai", "grpc-direct", "grpc-envoy"):
        status, message = attempt(stack, surface, old["key"], workflow_id)
        assert status in UNAUTHENTICATED and message == "invalid API key", surface
        assert attempt(stack, surface, new["key"], workflow_id) == (200, "")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "k", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at: already past"),
        (
            {"name": "k", "workflows": ["wf_nope"]},
            "workflows[0]: no workflow wf_nope in this account",
        ),
        (
            {"name": "k", "scopes": ["admin", "run"], "workflows": ["<mine>"]},
            "workflows: only keys without the admin scope have a list",
        ),
    ],
)
def test_key_options_are_validated(api: Api, body: dict[str, Any], message: str) -> None:
    mine = api.publish(BMI)
    body = {**body, "workflows": [mine if w == "<mine>" else w for w in body.get("workflows", [])]}

    response = api.post("/v1/keys", body)

    assert (response.status_code, response.json()["message"]) == (400, message)


def test_expires_at_that_is_not_rfc_3339_is_400(api: Api) -> None:
    response = api.post("/v1/keys", {"name": "k", "expires_at": "next tuesday"})

    assert response.status_code == 400, response.text


def test_rotation_errors(api: Api, stack: Stack) -> None:
    key = api.post("/v1/keys", {"name": "k"}).json()
    _, other_admin = stack.create_key()

    negative = api.post(f"/v1/keys/{key['id']}:rotate", {"grace_s": -1})
    elsewhere = httpx.post(
        f"{stack.base_url}/v1/keys/{key['id']}:rotate", json={}, headers={"X-API-KEY": other_admin}
    )
    by_run_key = httpx.post(
        f"{stack.base_url}/v1/keys/{key['id']}:rotate", json={}, headers={"X-API-KEY": key["key"]}
    )
    api.http.delete(f"/v1/keys/{key['id']}", headers=api.headers)
    revoked = api.post(f"/v1/keys/{key['id']}:rotate", {})

    assert negative.status_code == 400 and "grace_s" in negative.json()["message"]
    assert elsewhere.status_code == 404
    assert by_run_key.status_code == 403
    assert (revoked.status_code, revoked.json()["message"]) == (
        400,
        f"id: key {key['id']} is revoked",
    )


def _my_key_id(api: Api) -> str:
    return next(
        k["id"] for k in api.get("/v1/keys").json()["keys"] if api.key.startswith(k["prefix"])
    )


def test_every_administrative_change_is_in_the_audit_log_without_secrets(
    api: Api, stack: Stack
) -> None:
    me = _my_key_id(api)
    created = api.post("/v1/workflows", BMI).json()
    api.http.put(
        f"/v1/workflows/{created['id']}", json={**BMI, "name": "BMI v2"}, headers=api.headers
    )
    api.post(f"/v1/workflows/{created['id']}:publish", {})
    key = api.post("/v1/keys", {"name": "team", "workflows": [created["id"]]}).json()
    rotated = api.post(f"/v1/keys/{key['id']}:rotate", {"grace_s": 60}).json()
    api.http.delete(f"/v1/keys/{key['id']}", headers=api.headers)
    webhook = api.post("/v1/webhooks:rotateSecret", {}).json()
    assert stack.cli("accounts", "set-credits", api.account, "7").returncode == 0
    cli_key = stack.cli(
        "keys", "create", "--account", api.account, "--name", "from-cli"
    ).stdout.strip()
    # Another account's changes are not this one's.
    _, other = stack.create_key()
    with Api(stack.base_url, other) as stranger:
        stranger.publish(BMI)

    response = api.get("/v1/audit")

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"events", "next_page_token"} and body["next_page_token"] == ""
    events = body["events"]
    assert [(e["action"], e["key_id"]) for e in events] == [
        ("key.created", "cli"),
        ("credits.set", "cli"),
        ("webhook_secret.rotated", me),
        ("key.revoked", me),
        ("key.rotated", me),
        ("key.created", me),
        ("workflow.published", me),
        ("workflow.saved", me),
        ("workflow.created", me),
        # The api fixture's key, made as `flowport keys create` makes one.
        ("key.created", "cli"),
    ]
    assert all(set(e) == {"at", "key_id", "action", "target", "detail"} for e in events)
    assert [e["target"] for e in events[2:9]] == [
        _account_id(events),
        key["id"],
        key["id"],
        key["id"],
        created["id"],
        created["id"],
        created["id"],
    ]
    assert events[1]["detail"] == {"credits": 7}
    assert events[4]["detail"] == {"prefix": rotated["prefix"], "grace_s": 60}
    assert events[5]["detail"]["workflows"] == [created["id"]]
    assert events[6]["detail"] == {"version": 1}
    ats = [_parse(e["at"]) for e in events]
    assert ats == sorted(ats, reverse=True)
    for secret in (key["key"], rotated["key"], webhook["secret"], cli_key, api.key):
        assert secret not in response.text and secret[11:] not in response.text


def _account_id(events: list[dict[str, Any]]) -> str:
    return next(e["target"] for e in events if e["action"] == "credits.set")


def test_audit_pages_are_opaque_and_walk_every_event_once(api: Api) -> None:
    for index in range(5):
        api.post("/v1/workflows", {**BMI, "name": f"w{index}"})
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        query = {"limit": 2, **({"page_token": token} if token else {})}
        body = api.get("/v1/audit", params=query).json()
        pages += 1
        seen += [(e["action"], e["detail"]["name"]) for e in body["events"]]
        token = body["next_page_token"]
        if not token:
            break
        assert "=" not in token and not token.isdigit()

    created = [("workflow.created", f"w{index}") for index in reversed(range(5))]
    # The last: the api fixture's key, named "test".
    assert seen == [*created, ("key.created", "test")]
    assert pages == 3


@pytest.mark.parametrize(
    ("query", "field"),
    [({"limit": 501}, "limit"), ({"limit": -1}, "limit"), ({"page_token": "42"}, "page_token")],
)
def test_audit_refuses_bad_limits_and_tokens(api: Api, query: dict[str, Any], field: str) -> None:
    response = api.get("/v1/audit", params=query)

    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith(f"{field}: ")


def test_audit_needs_the_admin_scope(api: Api, stack: Stack) -> None:
    run_key = api.post("/v1/keys", {"name": "runner"}).json()["key"]

    assert (
        httpx.get(f"{stack.base_url}/v1/audit", headers={"X-API-KEY": run_key}).status_code == 403
    )
    assert httpx.get(f"{stack.base_url}/v1/audit").status_code == 401


@pytest.mark.parametrize("way", ["direct", "envoy"])
def test_audit_and_rotation_over_grpc(api: Api, stack: Stack, way: str) -> None:
    target = stack.grpc_target if way == "direct" else stack.envoy_target
    metadata = [("x-api-key", api.key)]
    with grpc.insecure_channel(target) as channel:
        keys = keys_pb2_grpc.ApiKeysStub(channel)
        made = keys.CreateApiKey(keys_pb2.CreateApiKeyRequest(name="g"), metadata=metadata)
        rotated = keys.RotateApiKey(
            keys_pb2.RotateApiKeyRequest(id=made.id, grace_s=30), metadata=metadata
        )
        page = audit_pb2_grpc.AuditStub(channel).ListAuditEvents(
            audit_pb2.ListAuditEventsRequest(limit=2), metadata=metadata
        )

    assert rotated.id == made.id and rotated.key != made.key
    assert rotated.HasField("previous_key_expires_at")
    assert [e.action for e in page.events] == ["key.rotated", "key.created"]
    assert page.events[0].detail["grace_s"] == 30
    assert page.next_page_token


def test_cli_makes_keys_that_expire_and_are_limited(api: Api, stack: Stack) -> None:
    allowed, other = api.publish(BMI), api.publish(CHAT)
    expires = datetime.now(UTC) + timedelta(days=1)

    made = stack.cli(
        "keys",
        "create",
        "--account",
        api.account,
        "--workflow",
        allowed,
        "--expires-at",
        _rfc3339(expires),
    )
    refused = stack.cli(
        "keys", "create", "--account", api.account, "--admin", "--workflow", allowed
    )

    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert attempt(stack, "flowai", key, allowed) == (200, "")
    assert attempt(stack, "flowai", key, other)[0] == 403
    listed = next(k for k in api.get("/v1/keys").json()["keys"] if key.startswith(k["prefix"]))
    assert listed["workflows"] == [allowed]
    assert abs(_parse(listed["expires_at"]) - expires) < timedelta(seconds=1)
    assert refused.returncode == 1
    assert (
        refused.stderr.strip()
        == "flowport: workflows: only keys without the admin scope have a list"
    )


def test_a_repeated_idempotency_key_does_not_open_another_workflow(
    api: Api, team: dict[str, str]
) -> None:
    key = f"idem-{team['id']}"
    first = api.run(team["other"], BMI_INPUT, headers={**api.headers, "Idempotency-Key": key})
    assert first.status_code == 200, first.text

    # The same call, with the same Idempotency-Key, by a key limited to another workflow.
    repeat = api.run(
        team["other"], BMI_INPUT, headers={"X-API-KEY": team["key"], "Idempotency-Key": key}
    )

    assert repeat.status_code == 403, repeat.text
    assert first.json()["run_id"] not in repeat.text
