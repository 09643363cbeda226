"""sdk/grpc/buf.gen.yaml, the `buf generate` template users run with the BSR's remote plugins.
The BSR is out of reach here, so its TypeScript entry runs with the same plugin from npm
(protoc-gen-es, at the version the template names) and the generated code must type-check."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from flowport.protos import DESCRIPTOR_SET_NAME, PACKAGE_DIR
from tests.integration.stack import REPO
from tests.integration.test_sdk_js import SDK, _npm_ci

TEMPLATE = REPO / "sdk" / "grpc" / "buf.gen.yaml"
BIN = REPO / "node_modules" / ".bin"
ES_PLUGIN = "buf.build/bufbuild/es"


def _npm_tools() -> None:
    if not (BIN / "protoc-gen-es").exists() or not (BIN / "buf").exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=REPO,
            check=True,
            timeout=300,
        )


def test_template_generates_typescript_that_type_checks() -> None:
    _npm_tools()
    _npm_ci(SDK)  # its pinned tsc
    template = yaml.safe_load(TEMPLATE.read_text())
    [es] = [p for p in template["plugins"] if p["remote"].startswith(ES_PLUGIN)]
    npm_version = subprocess.run(
        [str(BIN / "protoc-gen-es"), "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[-1]
    assert es["remote"] == f"{ES_PLUGIN}:{npm_version}", "the template and package.json disagree"
    # Under the repository, so the generated imports find @bufbuild/protobuf in node_modules.
    out = REPO / "build" / "buf-gen-test"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    out.mkdir(parents=True)
    local = {key: value for key, value in es.items() if key != "remote"}
    template["plugins"] = [{**local, "local": str(BIN / "protoc-gen-es")}]
    (out / "buf.gen.yaml").write_text(yaml.safe_dump(template))

    subprocess.run(
        [
            str(BIN / "buf"),
            "generate",
            str(PACKAGE_DIR / DESCRIPTOR_SET_NAME),
            "--template",
            "buf.gen.yaml",
            "--path",
            "flowport",
        ],
        cwd=out,
        check=True,
        timeout=120,
    )

    generated = sorted(str(p.relative_to(out / "gen" / "ts")) for p in out.rglob("*_pb.ts"))
    assert "flowport/v1/runner_pb.ts" in generated
    assert "google/api/annotations_pb.ts" in generated
    assert (
        "export const WorkflowRunner: GenService<"
        in (out / "gen/ts/flowport/v1/runner_pb.ts").read_text()
    )
    check = subprocess.run(
        [
            str(SDK / "node_modules" / ".bin" / "tsc"),
            "--noEmit",
            "--strict",
            "--target",
            "ES2022",
            "--module",
            "ESNext",
            "--moduleResolution",
            "Bundler",
            *(str(Path(out / "gen" / "ts" / name)) for name in generated),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr
