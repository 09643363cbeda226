"""GET /v1/account: the caller's account and the run credits it has left, for any key of
the account (the console's account page)."""

from __future__ import annotations

import httpx

from flowport.demo import BMI
from tests.integration.client import Api
from tests.integration.stack import Stack


def test_the_account_tells_its_credits_as_runs_spend_them(api: Api, stack: Stack) -> None:
    unlimited = api.get("/v1/account")
    assert unlimited.status_code == 200, unlimited.text
    body = unlimited.json()
    assert body["name"] == api.account
    assert body["id"].startswith("acct_")
    assert "credits" not in body  # unlimited

    workflow_id = api.publish(BMI)
    assert stack.cli("accounts", "set-credits", api.account, "2").returncode == 0
    assert api.get("/v1/account").json()["credits"] == "2"
    assert api.run(workflow_id, {"height": 1.8, "weight": 75}).status_code == 200
    assert api.get("/v1/account").json()["credits"] == "1"

    # A key with the run scope only reads it too.
    _, run_key = stack.create_key(account=api.account, scopes=("run",))
    with Api(stack.base_url, run_key) as runner:
        assert runner.get("/v1/account").json()["credits"] == "1"


def test_the_account_needs_a_key_and_takes_no_query(api: Api, stack: Stack) -> None:
    missing = httpx.get(f"{stack.base_url}/v1/account")
    assert missing.status_code == 401
    refused = api.get("/v1/account?name=other")
    assert refused.status_code == 400
    assert "query parameter name is not accepted by GET /v1/account" in refused.json()["message"]
