"""The JavaScript SDK (sdk/js), compiled with tsc, tested by Node's own test runner against
the real stack: its tests call the service through Envoy as a user's code would."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from flowport.demo import BMI, CHAT
from tests.fakes.fake_llm import FakeLlm
from tests.integration.client import Api
from tests.integration.npm import npm_ci
from tests.integration.stack import REPO, Stack

SDK = REPO / "sdk" / "js"


def _node_test(cwd: Path, env: dict[str, str], *paths: str) -> str:
    result = subprocess.run(
        ["node", "--test", "--test-reporter=tap", *paths],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-4000:]
    passed = re.search(r"^# pass (\d+)$", result.stdout, re.MULTILINE)
    assert passed and int(passed.group(1)) > 0, result.stdout[-4000:]
    assert re.search(r"^# fail 0$", result.stdout, re.MULTILINE), result.stdout[-4000:]
    return result.stdout


def test_sdk_js_against_the_stack(stack: Stack, api: Api, fake_llm: FakeLlm) -> None:
    npm_ci(SDK)
    # The tests import the compiled SDK: build it from the current source.
    subprocess.run(["npm", "run", "--silent", "build"], cwd=SDK, check=True, timeout=300)
    env = {
        "FLOWPORT_URL": stack.base_url,
        "FLOWPORT_KEY": api.key,
        "FLOWPORT_WORKFLOW": api.publish(BMI),
        "FLOWPORT_CHAT_WORKFLOW": api.publish(CHAT),
        # The fake LLM's control routes live beside its /v1.
        "FAKE_LLM_URL": fake_llm.base_url.removesuffix("/v1"),
    }

    tests = sorted(str(p.relative_to(SDK)) for p in (SDK / "test").glob("*.test.mjs"))
    output = _node_test(SDK, env, *tests)

    for name in (
        "README's example runs and prints what README says",
        "a stream whose connection drops resumes from the run's events",
        "keys: created, listed, rotated and revoked",
    ):
        assert re.search(rf"^ok \d+ - {re.escape(name)}$", output, re.MULTILINE), name
