"""What a new user types: `flowport keys create`, `flowport demo`'s curl line; Envoy's limits."""

from __future__ import annotations

import re
import subprocess

import httpx

from tests.integration.client import Api
from tests.integration.stack import FLOWPORT, REPO, Stack


def _flowport(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FLOWPORT), *args],
        env=stack.env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_keys_create_prints_a_working_admin_key(stack: Stack) -> None:
    result = _flowport(stack, "keys", "create", "--admin", "--account", "cli-user")

    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert re.fullmatch(r"fp_[A-Za-z0-9]{32,}", key)
    response = httpx.get(f"{stack.base_url}/v1/keys", headers={"X-API-KEY": key})
    assert response.status_code == 200
    assert [item["scopes"] for item in response.json()["keys"]] == [["admin", "run"]]


def test_demo_prints_a_curl_line_that_works_as_printed(stack: Stack) -> None:
    result = _flowport(stack, "demo")

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
    first = _flowport(stack, "demo").stderr
    second = _flowport(stack, "demo").stderr

    ids = re.compile(r"/run/(wf_\w+)")
    assert ids.findall(first) == ids.findall(second)


def test_body_over_the_limit_is_413(api: Api) -> None:
    huge = {"input": {"text": "x" * 2_000_000}}

    response = api.post("/v1/api/workflow/run/wf_any", huge)

    assert response.status_code == 413
    assert response.json()["code"] == 413
    assert api.get("/v1/keys").status_code == 200
