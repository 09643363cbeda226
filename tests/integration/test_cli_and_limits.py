"""What a new user types: `flowport keys create`, `flowport demo`'s curl line; Envoy's limits."""

from __future__ import annotations

import re
import subprocess

import httpx
import yaml

from flowport.demo import BMI
from flowport.ids import random_token
from tests.integration.client import Api
from tests.integration.stack import Stack


def test_keys_create_prints_a_working_admin_key(stack: Stack) -> None:
    result = stack.cli("keys", "create", "--admin", "--account", "cli-user")

    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert re.fullmatch(r"fp_[A-Za-z0-9]{32,}", key)
    response = httpx.get(f"{stack.base_url}/v1/keys", headers={"X-API-KEY": key})
    assert response.status_code == 200
    assert [item["scopes"] for item in response.json()["keys"]] == [["admin", "run"]]


def test_demo_prints_a_curl_line_that_works_as_printed(stack: Stack) -> None:
    result = stack.cli("demo")

    assert result.returncode == 0, result.stderr
    curl_lines = [
        line.strip() for line in result.stderr.splitlines() if line.strip().startswith("curl ")
    ]
    assert len(curl_lines) == 2
    answer = subprocess.run(
        ["bash", "-c", curl_lines[0]], capture_output=True, text=True, timeout=30
    )
    assert answer.returncode == 0
    assert '"output":"您的BMI值是23.15"' in answer.stdout


def test_demo_twice_reuses_the_workflows(stack: Stack) -> None:
    first = stack.cli("demo").stderr
    second = stack.cli("demo").stderr

    ids = re.compile(r"/run/(wf_\w+)")
    assert ids.findall(first) == ids.findall(second)


def test_body_over_the_limit_is_413(api: Api) -> None:
    huge = {"input": {"text": "x" * 2_000_000}}

    response = api.post("/v1/api/workflow/run/wf_any", huge)

    assert response.status_code == 413
    assert response.json()["code"] == 413
    assert api.get("/v1/keys").status_code == 200


def test_workflows_publish_reads_yaml_and_makes_new_versions(stack: Stack, tmp_path) -> None:
    definition = tmp_path / "bmi.yaml"
    definition.write_text(yaml.safe_dump(BMI, allow_unicode=True), encoding="utf-8")
    account = f"yaml-{random_token(6)}"

    first = stack.cli("workflows", "publish", str(definition), "--account", account)
    second = stack.cli("workflows", "publish", str(definition), "--account", account)

    assert first.returncode == 0, first.stderr
    workflow_id, _, version = first.stdout.split()
    assert (version, second.stdout.split()) == ("1", [workflow_id, "version", "2"])
    _, key = stack.create_key(account=account)
    with Api(stack.base_url, key) as api:
        assert (
            api.run(workflow_id, {"height": 2, "weight": 80}).json()["output"] == "您的BMI值是20.0"
        )


def test_workflows_publish_names_what_is_wrong(stack: Stack, tmp_path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"name": "x", "nodes": [{"id": "a", "type": "magic"}]}')

    result = stack.cli("workflows", "publish", str(broken), "--account", "someone")

    assert result.returncode == 1
    assert "unknown node type 'magic'" in result.stderr
