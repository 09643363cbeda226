"""sdk/grpc/buf.gen.yaml, the `buf generate` template users run with the BSR's remote plugins.
The BSR is out of reach here, so its TypeScript entry runs with the same plugin from npm
(protoc-gen-es, at the version the template names) and the generated code must type-check."""

from __future__ import annotations

import subprocess

from tests.integration.npm import ES_PLUGIN, TOOLS_BIN, es_plugin_entry, generate_typescript, npm_ci
from tests.integration.stack import REPO
from tests.integration.test_sdk_js import SDK


def test_template_names_the_plugin_version_the_tests_run() -> None:
    npm_ci(REPO)
    version = subprocess.run(
        [str(TOOLS_BIN / "protoc-gen-es"), "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[-1]

    assert es_plugin_entry()["remote"] == f"{ES_PLUGIN}:{version}"


def test_template_generates_typescript_that_type_checks() -> None:
    # Under the repository, so the generated imports find @bufbuild/protobuf in node_modules.
    out = REPO / "build" / "buf-gen-test"

    generated = generate_typescript(out)

    names = [str(p.relative_to(out)) for p in generated]
    assert "flowport/v1/runner_pb.ts" in names
    assert "google/api/annotations_pb.ts" in names
    assert (
        "export const WorkflowRunner: GenService<" in (out / "flowport/v1/runner_pb.ts").read_text()
    )
    npm_ci(SDK)  # its pinned tsc
    check = subprocess.run(
        [
            str(SDK / "node_modules" / ".bin" / "tsc"),
            "--noEmit",
            "--strict",
            "--target",
            "ES2022",
            "--module",
            "NodeNext",
            "--moduleResolution",
            "NodeNext",
            *map(str, generated),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr
