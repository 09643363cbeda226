"""`make generate`: compiles proto/ into the committed Python code and Envoy's descriptor set.

A development tool: it needs the checkout's proto/ folder and grpcio-tools (a development
dependency). The service itself only reads what this wrote, as package data."""

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
# The generated package, beside which the descriptor set is written.
PACKAGE_DIR = GENERATED_DIR / "flowport" / "v1"
# Envoy's transcoder reads every service, route and message from this file (flowport.envoy).
DESCRIPTOR_SET_NAME = "flowport.binpb"
# The parent of googleapis-common-protos' `google` package, which ships annotations.proto & co.
GOOGLEAPIS_DIR = Path(google.api.__path__[0]).parents[1]
# Envoy prints google.rpc.Status details only if their types are in the set.
EXTRA_DESCRIPTOR_INPUTS = ["google/rpc/status.proto", "google/rpc/error_details.proto"]


def proto_files() -> list[str]:
    return sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.glob("flowport/v1/*.proto"))


def _protoc(*args: str) -> None:
    from grpc_tools import protoc

    # protoc's own well-known types (struct.proto, timestamp.proto) ship inside grpc_tools.
    well_known_dir = Path(protoc.__file__).parent / "_proto"
    includes = [f"-I{PROTO_DIR}", f"-I{GOOGLEAPIS_DIR}", f"-I{well_known_dir}"]
    code = protoc.main(["grpc_tools.protoc", *includes, *args])
    if code != 0:
        raise RuntimeError(f"protoc failed with exit code {code}")


def build_descriptor_set(out: Path) -> Path:
    """Every flowport.v1 service and what it imports, with source info (route comments)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    _protoc(
        "--include_imports",
        "--include_source_info",
        f"--descriptor_set_out={out}",
        *proto_files(),
        *EXTRA_DESCRIPTOR_INPUTS,
    )
    return out


def generate(out_dir: Path = GENERATED_DIR) -> None:
    """The Python messages, stubs and type stubs, and the descriptor set beside them."""
    _protoc(
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *proto_files(),
    )
    build_descriptor_set(out_dir / "flowport" / "v1" / DESCRIPTOR_SET_NAME)


def stale_generated_files() -> list[str]:
    """Files under services/flowport/v1 that differ from what proto/ generates now."""
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        fresh = Path(tmp) / "flowport" / "v1"
        generated = (".py", ".pyi", ".binpb")
        names = {p.name for p in fresh.iterdir()} | {
            p.name for p in PACKAGE_DIR.iterdir() if p.name.endswith(generated)
        }
        names.discard("__init__.py")
        return sorted(
            name
            for name in names
            if not (fresh / name).exists()
            or not (PACKAGE_DIR / name).exists()
            or not filecmp.cmp(fresh / name, PACKAGE_DIR / name, shallow=False)
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the generated code is stale")
    parser.add_argument("--descriptor-set", type=Path, help="write the descriptor set here only")
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
    generate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
