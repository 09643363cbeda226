"""The npm side of the client tests: packages installed from their locks, as `make test`
installs them, and TypeScript stubs made by sdk/grpc/buf.gen.yaml."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from flowport.protos import DESCRIPTOR_SET_NAME, PACKAGE_DIR
from tests.integration.stack import REPO

# buf and protoc-gen-es, from the top-level package.json.
TOOLS_BIN = REPO / "node_modules" / ".bin"
BUF_TEMPLATE = REPO / "sdk" / "grpc" / "buf.gen.yaml"
ES_PLUGIN = "buf.build/bufbuild/es"


def npm_ci(package: Path) -> None:
    """The package's dependencies from its lock, unless `make test` installed them already."""
    if not (package / "node_modules" / ".package-lock.json").exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=package,
            check=True,
            timeout=300,
        )


def es_plugin_entry() -> dict[str, Any]:
    """The template's TypeScript plugin."""
    template = yaml.safe_load(BUF_TEMPLATE.read_text())
    [es] = [p for p in template["plugins"] if p["remote"].startswith(ES_PLUGIN)]
    return dict(es)


def generate_typescript(out: Path) -> list[Path]:
    """Runs the template's TypeScript entry with protoc-gen-es from npm in place of the BSR's
    remote plugin (out of reach here); the code goes to `out`. Returns the files made."""
    npm_ci(REPO)
    template = yaml.safe_load(BUF_TEMPLATE.read_text())
    local = {key: value for key, value in es_plugin_entry().items() if key != "remote"}
    template["plugins"] = [{**local, "local": str(TOOLS_BIN / "protoc-gen-es"), "out": str(out)}]
    shutil.rmtree(out, ignore_errors=True)
    work = REPO / "build" / "buf-gen"
    work.mkdir(parents=True, exist_ok=True)
    (work / "buf.gen.yaml").write_text(yaml.safe_dump(template))
    subprocess.run(
        [
            str(TOOLS_BIN / "buf"),
            "generate",
            str(PACKAGE_DIR / DESCRIPTOR_SET_NAME),
            "--template",
            str(work / "buf.gen.yaml"),
            "--path",
            "flowport",
        ],
        check=True,
        timeout=120,
    )
    return sorted(out.rglob("*_pb.ts"))
