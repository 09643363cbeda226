"""Snippets run as printed: the curl, Python, JavaScript (Node's fetch) and gRPC code the
service (and `flowport workflows snippet`) gives for a workflow calls it and prints its output,
with the key read from FLOWPORT_API_KEY and never written in."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowport.demo import BMI
from tests.integration.client import Api
from tests.integration.stack import Stack

NODE = Path("/usr/bin/node")
# Where each language's code is run from, as a user would: a file handed to its interpreter.
RUNNERS = {
    "curl": (["bash"], "call.sh"),
    "python": ([sys.executable], "call.py"),
    "javascript": ([str(NODE)], "call.js"),
    "grpc": ([sys.executable], "call_grpc.py"),
}


def _run(
    lang: str, code: str, directory: Path, key: str | None
) -> subprocess.CompletedProcess[str]:
    command, name = RUNNERS[lang]
    (directory / name).write_text(code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWPORT_")}
    if key is not None:
        env["FLOWPORT_API_KEY"] = key
    return subprocess.run(
        [*command, name], cwd=directory, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def bmi(api: Api) -> tuple[str, str]:
    """A published BMI and what it answers for the snippets' example input (1 and 1)."""
    workflow_id = api.publish(BMI)
    output = api.run(workflow_id, {"height": 1, "weight": 1}).json()["output"]
    return workflow_id, output


def test_every_snippet_runs_as_printed(api: Api, bmi: tuple[str, str], tmp_path: Path) -> None:
    workflow_id, output = bmi
    answer = api.get(f"/v1/workflows/{workflow_id}/snippets")
    assert answer.status_code == 200, answer.text
    snippets = {s["lang"]: s["code"] for s in answer.json()["snippets"]}
    assert list(snippets) == ["curl", "python", "javascript", "grpc"]
    for lang, code in snippets.items():
        assert api.key not in code and "FLOWPORT_API_KEY" in code, lang
        if lang == "javascript" and not NODE.exists():
            continue
        ran = _run(lang, code, tmp_path, api.key)
        assert ran.returncode == 0, (lang, ran.stdout, ran.stderr)
        if lang == "curl":
            assert f'"output":"{output}"' in ran.stdout, ran.stdout
        else:
            assert ran.stdout == output + "\n", (lang, ran.stdout)


@pytest.mark.skipif(not NODE.exists(), reason="Node is not installed")
def test_a_snippet_without_a_key_fails_saying_why(
    api: Api, bmi: tuple[str, str], tmp_path: Path
) -> None:
    workflow_id, _ = bmi
    snippets = {
        s["lang"]: s["code"]
        for s in api.get(f"/v1/workflows/{workflow_id}/snippets").json()["snippets"]
    }
    for lang in ("curl", "javascript"):
        ran = _run(lang, snippets[lang], tmp_path, "fp_" + "0" * 32)
        assert ran.returncode != 0, lang
        assert "invalid API key" in ran.stdout + ran.stderr, (lang, ran.stdout, ran.stderr)


def test_the_cli_prints_the_same_code(
    stack: Stack, api: Api, bmi: tuple[str, str], tmp_path: Path
) -> None:
    workflow_id, output = bmi
    served = {
        s["lang"]: s["code"]
        for s in api.get(f"/v1/workflows/{workflow_id}/snippets").json()["snippets"]
    }
    for lang in ("curl", "python", "javascript", "grpc"):
        printed = stack.cli("workflows", "snippet", workflow_id, "--lang", lang)
        assert printed.returncode == 0, printed.stderr
        assert printed.stdout == served[lang]
    python = stack.cli("workflows", "snippet", workflow_id, "--lang", "python").stdout
    assert _run("python", python, tmp_path, api.key).stdout == output + "\n"
    missing = stack.cli("workflows", "snippet", "wf_missing")
    assert missing.returncode == 1
    assert missing.stderr == "flowport: workflow wf_missing not found\n"
    unknown = stack.cli("workflows", "snippet", workflow_id, "--lang", "cobol")
    assert unknown.returncode == 2 and "invalid choice: 'cobol'" in unknown.stderr
