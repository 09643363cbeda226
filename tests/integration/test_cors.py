"""Browsers' cross-origin calls (CORS): each account lists its allowed origins
(`PUT /v1/account/cors`); Envoy's CORS filter answers preflights for the origins of every
account, and the service holds each call to the origins of its key's account. Every replica's
Envoy follows a change made on any of them."""

from __future__ import annotations

import struct
from pathlib import Path

import httpx
import pytest
import yaml

from flowport.demo import BMI
from flowport.ids import random_token
from flowport.v1 import account_pb2
from tests.integration.client import Api
from tests.integration.stack import Stack, wait_for

# Polled for, never timed: the routes reach Envoy when it has read the file again.
PATIENCE_S = 30.0


def _origin() -> str:
    return f"https://app-{random_token(8).lower()}.example.com"


def preflight(base_url: str, origin: str, path: str = "/v1/account") -> httpx.Response:
    return httpx.options(
        f"{base_url}{path}",
        headers={
            "origin": origin,
            "access-control-request-method": "PUT",
            "access-control-request-headers": "content-type, x-api-key",
        },
    )


def allowed_by_envoy(base_url: str, origin: str) -> bool:
    return preflight(base_url, origin).headers.get("access-control-allow-origin") == origin


def set_origins(api: Api, origins: list[str]) -> httpx.Response:
    return api.http.put("/v1/account/cors", json={"allowed_origins": origins}, headers=api.headers)


def test_a_preflight_from_an_allowed_origin_is_answered_and_others_are_not(
    api: Api, stack: Stack
) -> None:
    origin = _origin()
    assert not allowed_by_envoy(stack.base_url, origin)
    answer = set_origins(api, [origin])
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"allowed_origins": [origin]}
    assert api.get("/v1/account/cors").json() == {"allowed_origins": [origin]}

    wait_for(lambda: allowed_by_envoy(stack.base_url, origin), PATIENCE_S, "the CORS policy")
    answered = preflight(stack.base_url, origin)
    assert answered.status_code in (200, 204)
    assert "PUT" in answered.headers["access-control-allow-methods"]
    allowed_headers = answered.headers["access-control-allow-headers"]
    for header in ("content-type", "x-api-key", "authorization", "idempotency-key", "x-grpc-web"):
        assert header in allowed_headers
    # Any route: a preflight carries no key, so it is the same for every path.
    elsewhere = preflight(stack.base_url, origin, "/v1/api/workflow/run/wf_x")
    assert elsewhere.headers["access-control-allow-origin"] == origin

    unknown = preflight(stack.base_url, _origin())
    assert "access-control-allow-origin" not in unknown.headers
    # The same host on another scheme or port is another origin.
    other_port = preflight(stack.base_url, origin + ":8443")
    assert "access-control-allow-origin" not in other_port.headers

    # Cleared: the policy drops the origin.
    assert set_origins(api, []).json() == {"allowed_origins": []}
    wait_for(lambda: not allowed_by_envoy(stack.base_url, origin), PATIENCE_S, "the origin dropped")


def test_a_cross_origin_call_is_held_to_its_own_accounts_origins(api: Api, stack: Stack) -> None:
    origin = _origin()
    workflow_id = api.publish(BMI)
    assert set_origins(api, [origin]).status_code == 200
    wait_for(lambda: allowed_by_envoy(stack.base_url, origin), PATIENCE_S, "the CORS policy")
    _, other_key = stack.create_key()

    mine = api.get("/v1/account", headers={**api.headers, "origin": origin})
    assert mine.status_code == 200, mine.text
    assert mine.headers["access-control-allow-origin"] == origin
    assert "x-run-id" in mine.headers["access-control-expose-headers"]

    # Another account's key from the origin this account allows: refused, in words the page
    # can read (Envoy allows the origin, so the browser shows it the answer).
    refused = httpx.get(
        f"{stack.base_url}/v1/account", headers={"x-api-key": other_key, "origin": origin}
    )
    assert refused.status_code == 403
    assert f"origin {origin} is not allowed" in refused.json()["message"]
    assert refused.headers["access-control-allow-origin"] == origin
    # Every surface: a run on FlowAI's route too.
    _, runner = stack.create_key(account=api.account, scopes=("run",))
    run = httpx.post(
        f"{stack.base_url}/v1/api/workflow/run/{workflow_id}",
        json={"input": {"height": 1.8, "weight": 75}},
        headers={"x-api-key": other_key, "origin": origin},
    )
    assert run.status_code == 403
    allowed_run = httpx.post(
        f"{stack.base_url}/v1/api/workflow/run/{workflow_id}",
        json={"input": {"height": 1.8, "weight": 75}},
        headers={"x-api-key": runner, "origin": origin.upper()},
    )
    assert allowed_run.status_code == 200, allowed_run.text

    # Without Origin (a server, curl), and from the page's own origin (the console): as ever.
    plain = httpx.get(f"{stack.base_url}/v1/account", headers={"x-api-key": other_key})
    assert plain.status_code == 200
    same = httpx.get(
        f"{stack.base_url}/v1/account", headers={"x-api-key": other_key, "origin": stack.base_url}
    )
    assert same.status_code == 200, same.text
    # The service's header comes from Envoy only: one a client sends is dropped.
    forged = httpx.get(
        f"{stack.base_url}/v1/account",
        headers={"x-api-key": other_key, "x-flowport-origin": "https://evil.example.com"},
    )
    assert forged.status_code == 200, forged.text


def _grpc_web(stack: Stack, key: str, origin: str) -> httpx.Response:
    payload = account_pb2.GetAccountRequest().SerializeToString()
    return httpx.post(
        f"{stack.base_url}/flowport.v1.Accounts/GetAccount",
        content=struct.pack(">BI", 0, len(payload)) + payload,
        headers={
            "content-type": "application/grpc-web+proto",
            "x-grpc-web": "1",
            "x-api-key": key,
            "origin": origin,
        },
    )


def test_grpc_web_from_an_allowed_origin_gets_the_cors_headers(api: Api, stack: Stack) -> None:
    origin = _origin()
    assert set_origins(api, [origin]).status_code == 200
    wait_for(lambda: allowed_by_envoy(stack.base_url, origin), PATIENCE_S, "the CORS policy")
    answer = _grpc_web(stack, api.key, origin)
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == origin
    assert "grpc-status" in answer.headers["access-control-expose-headers"]
    assert answer.content[:1] == b"\x00"  # a message frame: the account
    account = account_pb2.Account.FromString(answer.content[5 : 5 + answer.content[4]])
    assert account.name == api.account

    _, other_key = stack.create_key()
    refused = _grpc_web(stack, other_key, origin)
    assert refused.headers["grpc-status"] == "7"  # PERMISSION_DENIED
    assert refused.headers["access-control-allow-origin"] == origin


def test_origins_are_checked_named_audited_and_admin_only(api: Api, stack: Stack) -> None:
    for bad in (
        "*",
        "https://app.example.com/",
        "https://app.example.com/path",
        "https://*.example.com",
        "ftp://files.example.com",
        "app.example.com",
        "https://app.example.com:99999",
        "https://user@app.example.com",
    ):
        answer = set_origins(api, ["https://fine.example.com", bad])
        assert answer.status_code == 400, bad
        assert repr(bad) in answer.json()["message"], answer.text
    assert api.get("/v1/account/cors").json() == {"allowed_origins": []}

    # Stored as a browser sends them: lower case, the scheme's default port left out, once.
    stored = set_origins(
        api, ["HTTPS://App.Example.com:443", "https://app.example.com", "http://localhost:5173"]
    )
    assert stored.json() == {
        "allowed_origins": ["https://app.example.com", "http://localhost:5173"]
    }
    events = api.get("/v1/audit").json()["events"]
    assert events[0]["action"] == "cors.set"
    assert events[0]["detail"]["allowed_origins"] == [
        "https://app.example.com",
        "http://localhost:5173",
    ]

    _, runner = stack.create_key(account=api.account, scopes=("run",))
    with Api(stack.base_url, runner) as run_only:
        assert run_only.get("/v1/account/cors").status_code == 403
        assert set_origins(run_only, ["https://x.example.com"]).status_code == 403
    assert httpx.get(f"{stack.base_url}/v1/account/cors").status_code == 401
    set_origins(api, [])


def test_envoy_config_writes_the_origins_of_the_moment(
    api: Api, stack: Stack, tmp_path: Path
) -> None:
    origin = _origin()
    assert set_origins(api, [origin]).status_code == 200
    written = stack.cli("envoy-config", "--out", str(tmp_path))
    assert written.returncode == 0, written.stderr
    assert str(tmp_path / "routes.yaml") in written.stdout.splitlines()
    routes = yaml.safe_load((tmp_path / "routes.yaml").read_text())
    host = routes["resources"][0]["virtual_hosts"][0]
    policy = host["typed_per_filter_config"]["envoy.filters.http.cors"]
    assert {"exact": origin} in policy["allow_origin_string_match"]
    set_origins(api, [])

    # Where the database cannot be read (a pod's init container before it exists), the files
    # are still written, allowing no origin, and the command says why.
    unreachable = stack.cli(
        "envoy-config",
        "--out",
        str(tmp_path / "elsewhere"),
        DATABASE_URL="postgresql://flowport@127.0.0.1:1/nowhere",
    )
    assert unreachable.returncode == 0, unreachable.stderr
    assert "could not read the accounts' allowed origins" in unreachable.stderr
    routes = yaml.safe_load((tmp_path / "elsewhere" / "routes.yaml").read_text())
    assert "typed_per_filter_config" not in routes["resources"][0]["virtual_hosts"][0]


@pytest.mark.postgres
def test_origins_set_on_one_replica_hold_on_the_other(tmp_path: Path, database: str) -> None:
    a, b = (Stack(data_dir=tmp_path / n, database_url=database, llm_base_url=None) for n in "ab")
    try:
        a.start()
        b.start()
        _, key = a.create_key()
        _, other_key = a.create_key()
        origin = _origin()
        with Api(a.base_url, key) as on_a, Api(b.base_url, key) as on_b:
            # Read on B first, so B holds the account's (empty) list when A changes it.
            refused = on_b.get("/v1/account", headers={**on_b.headers, "origin": origin})
            assert refused.status_code == 403
            assert set_origins(on_a, [origin]).status_code == 200
            wait_for(lambda: allowed_by_envoy(b.base_url, origin), PATIENCE_S, "B's CORS policy")
            wait_for(
                lambda: (
                    on_b.get("/v1/account", headers={**on_b.headers, "origin": origin}).status_code
                    == 200
                ),
                PATIENCE_S,
                "B's service to allow the origin",
            )
            other = httpx.get(
                f"{b.base_url}/v1/account", headers={"x-api-key": other_key, "origin": origin}
            )
            assert other.status_code == 403

            # Cleared on B: A's Envoy drops it too.
            assert set_origins(on_b, []).status_code == 200
            wait_for(lambda: not allowed_by_envoy(a.base_url, origin), PATIENCE_S, "A dropping it")
    finally:
        for replica in (a, b):
            replica.stop()


def test_workers_keep_one_policy_and_each_holds_calls_to_it(tmp_path: Path) -> None:
    """`serve --workers 2`: every worker writes the same routes, and a change made through one
    worker is enforced by the other (calls go round-robin)."""
    stack = Stack(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'flowport.db'}",
        llm_base_url=None,
        workers=2,
    )
    try:
        stack.start()
        _, key = stack.create_key()
        origin = _origin()
        with Api(stack.base_url, key) as api:
            # Both workers read the account's empty list (round-robin: two calls, two workers).
            for _ in range(4):
                answer = api.get("/v1/account", headers={**api.headers, "origin": origin})
                assert answer.status_code == 403
            assert set_origins(api, [origin]).status_code == 200
            wait_for(lambda: allowed_by_envoy(stack.base_url, origin), PATIENCE_S, "the policy")

            def every_worker_allows() -> bool:
                calls = [api.get("/v1/account", headers={**api.headers, "origin": origin})]
                calls += [api.get("/v1/account", headers={**api.headers, "origin": origin})]
                return all(call.status_code == 200 for call in calls)

            wait_for(every_worker_allows, PATIENCE_S, "both workers to allow the origin")
        routes = yaml.safe_load((tmp_path / "envoy" / "routes.yaml").read_text())
        policy = routes["resources"][0]["virtual_hosts"][0]["typed_per_filter_config"]
        assert policy["envoy.filters.http.cors"]["allow_origin_string_match"] == [{"exact": origin}]
    finally:
        stack.stop()
