"""Compiles proto/: the committed Python code, and Envoy's descriptor set at start-up."""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

import google.api

REPO = Path(__file__).resolve().parents[2]
PROTO_DIR = REPO / "proto"
GENERATED_DIR = REPO / "services"
# The parent of googleapis-common-protos' `google` package, which ships annotations.proto & co.
GOOGLEAPIS_DIR = Path(google.api.__path__[0]).parents[1]
# Envoy needs google.rpc.Status' detail types in the set to print rich errors (ENVOY.md).
EXTRA_DESCRIPTOR_INPUTS = ["google/rpc/status.proto", "google/rpc/error_details.proto"]


def proto_files() -> list[str]:
    return sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.glob("flowport/v1/*.proto"))


def _protoc(*args: str) -> None:
    # Imported on first use: protoc holds ~9 MiB of a process that imports it, and the serving
    # process imports this module (REPO) but never compiles; `flowport serve` builds Envoy's
    # descriptor set in its start-up child.
    from grpc_tools import protoc

    # protoc's own well-known types (struct.proto, timestamp.proto) ship inside grpc_tools.
    well_known_dir = Path(protoc.__file__).parent / "_proto"
    includes = [f"-I{PROTO_DIR}", f"-I{GOOGLEAPIS_DIR}", f"-I{well_known_dir}"]
    code = protoc.main(["grpc_tools.protoc", *includes, *args])
    if code != 0:
        raise RuntimeError(f"protoc failed with exit code {code}")


def build_descriptor_set(out: Path) -> Path:
    """Envoy's transcoder reads every service, route and message from this file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    _protoc(
        "--include_imports",
        "--include_source_info",
        f"--descriptor_set_out={out}",
        *proto_files(),
        *EXTRA_DESCRIPTOR_INPUTS,
    )
    return out


def generate_python(out_dir: Path = GENERATED_DIR) -> None:
    _protoc(
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *proto_files(),
    )


def stale_generated_files() -> list[str]:
    """Files under services/flowport/v1 that differ from what proto/ generates now."""
    with tempfile.TemporaryDirectory() as tmp:
        generate_python(Path(tmp))
        fresh = Path(tmp) / "flowport" / "v1"
        committed = GENERATED_DIR / "flowport" / "v1"
        names = {p.name for p in fresh.iterdir()} | {
            p.name for p in committed.iterdir() if p.name.endswith((".py", ".pyi"))
        }
        names.discard("__init__.py")
        return sorted(
            name
            for name in names
            if not (fresh / name).exists()
            or not (committed / name).exists()
            or not filecmp.cmp(fresh / name, committed / name, shallow=False)
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the generated code is stale")
    parser.add_argument("--descriptor-set", type=Path, help="write Envoy's descriptor set here")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_generated_files()
        if stale:
            print("stale generated code, run `make generate`: " + ", ".join(stale))
            return 1
        print("generated code is current")
        return 0
    if args.descriptor_set:
        build_descriptor_set(args.descriptor_set)
        return 0
    generate_python()
    return 0


if __name__ == "__main__":
    sys.exit(main())
