"""`pip install` of the repository gives a `flowport` that serves anywhere: the wheel carries
the descriptor set, Envoy's templates, the migrations and the web console, read as package
data."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from flowport.demo import BMI
from tests.integration.client import Api
from tests.integration.stack import REPO, Stack

# The uv `make` installs (requirements-uv.txt): the same resolver and cache as the checkout's.
UV = Path(os.environ.get("FLOWPORT_TEST_UV", REPO / ".tools" / "bin" / "uv"))


def _uv(*args: str | Path, cwd: Path) -> str:
    if not UV.is_file():
        pytest.fail(f"{UV} is missing: `make venv` installs it (or set FLOWPORT_TEST_UV)")
    done = subprocess.run(
        [str(UV), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment outside the checkout with the wheel of this checkout and
    its locked dependencies, but without the development ones; returns its `flowport`."""
    root = tmp_path_factory.mktemp("wheel")
    _uv("build", "--wheel", "--out-dir", root / "dist", REPO, cwd=root)
    (wheel,) = (root / "dist").glob("flowport-*.whl")
    venv = root / "venv"
    _uv("venv", "--python", sys.executable, venv, cwd=root)
    locked = root / "requirements.txt"
    _uv(
        "export", "--frozen", "--no-dev", "--no-emit-project", "--output-file", locked,
        cwd=REPO,
    )  # fmt: skip
    python = venv / "bin" / "python"
    _uv("pip", "install", "--python", python, "--require-hashes", "-r", locked, cwd=root)
    _uv("pip", "install", "--python", python, "--no-deps", wheel, cwd=root)
    return venv / "bin" / "flowport"


def test_the_installed_wheel_serves_bmi_through_envoy_outside_the_checkout(
    installed: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    stack = Stack(
        data_dir=elsewhere / "data",
        database_url=f"sqlite:///{elsewhere / 'data' / 'flowport.db'}",
        llm_base_url=None,
        executable=installed,
        cwd=elsewhere,
    )
    stack.start()
    try:
        created = stack.cli("keys", "create", "--admin", "--account", "wheel")
        assert created.returncode == 0, created.stderr
        with Api(stack.base_url, created.stdout.strip()) as api:
            workflow_id = api.publish(BMI)
            answer = api.run(workflow_id, {"height": "1.8", "weight": 75})
        assert answer.status_code == 200, answer.text
        assert answer.json()["output"] == "您的BMI值是23.15"
        # The Python client ships in the wheel, its dependencies among the runtime ones.
        client = subprocess.run(
            [
                installed.parent / "python",
                "-c",
                "from flowport.client import Client\n"
                f"print(Client().run({workflow_id!r}, {{'height': 1.8, 'weight': 75}}).output)",
            ],
            env={**os.environ, "FLOWPORT_URL": stack.base_url, "FLOWPORT_KEY": api.key},
            cwd=elsewhere,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert client.returncode == 0, client.stderr
        assert client.stdout == "您的BMI值是23.15\n"
        # The web console's files are package data too.
        console = httpx.get(f"{stack.base_url}/console/")
        assert console.status_code == 200
        script = re.search(r'src="(console\.js\?v=\w+)"', console.text)
        assert script is not None
        assert httpx.get(f"{stack.base_url}/console/{script.group(1)}").status_code == 200
    finally:
        assert stack.stop() == 0
    # The code that served was the installed package's, not the checkout's.
    where = subprocess.run(
        [installed.parent / "python", "-c", "import flowport; print(flowport.__file__)"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(installed.parent.parent)
