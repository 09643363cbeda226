"""sdk/grpc/node: the Node @grpc/grpc-js example, loading proto/ at run time, calls Run and
RunStream on the real stack, on Envoy's port and on the service's own."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from flowport.demo import BMI
from flowport.protos import GOOGLEAPIS_DIR
from tests.integration.client import Api
from tests.integration.npm import npm_ci
from tests.integration.stack import REPO, Stack

EXAMPLE = REPO / "sdk" / "grpc" / "node"


def _run_example(target: str, key: str, workflow_id: str) -> subprocess.CompletedProcess[str]:
    npm_ci(EXAMPLE)
    return subprocess.run(
        ["node", "client.mjs", json.dumps({"height": "1.8", "weight": 75})],
        cwd=EXAMPLE,
        env={
            **os.environ,
            "FLOWPORT_GRPC": target,
            "FLOWPORT_KEY": key,
            "FLOWPORT_WORKFLOW": workflow_id,
            # Where this repository's own build finds google/api/annotations.proto.
            "GOOGLEAPIS_PROTOS": str(GOOGLEAPIS_DIR),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("port", ["envoy", "direct"])
def test_grpc_js_example_runs_and_streams(stack: Stack, api: Api, port: str) -> None:
    target = stack.envoy_target if port == "envoy" else stack.grpc_target

    result = _run_example(target, api.key, api.publish(BMI))

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Run: 您的BMI值是23.15 (run_")
    assert lines[0].endswith(", succeeded)")
    events = [line.split()[1] for line in lines[1:]]
    assert events[0] == "run_started"
    assert events.count("node_started") == 3
    assert lines[-1] == 'RunStream: output "您的BMI值是23.15"'


def test_grpc_js_example_with_a_bad_key_is_unauthenticated(stack: Stack, api: Api) -> None:
    result = _run_example(stack.envoy_target, "fp_" + "x" * 32, api.publish(BMI))

    assert result.returncode == 1
    assert result.stderr.strip() == "error: UNAUTHENTICATED: invalid API key"
