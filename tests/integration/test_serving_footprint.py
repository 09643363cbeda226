"""What the serving process of `flowport serve` holds: start-up's one-time tools run in a child."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from tests.integration.stack import Stack


def test_the_serving_process_runs_no_protoc_and_envoy_gets_the_shipped_descriptors(
    stack: Stack,
) -> None:
    # The descriptor set is generated with the code (`make generate`) and shipped as package
    # data: protoc (grpc_tools, a development dependency) never loads in a serving process.
    assert stack.process is not None
    maps = Path(f"/proc/{stack.process.pid}/maps").read_text()
    assert "cygrpc" in maps  # the serving process itself, with grpc loaded
    assert "_protoc_compiler" not in maps
    shipped = resources.files("flowport.v1").joinpath("flowport.binpb").read_bytes()
    assert (stack.data_dir / "envoy" / "flowport.binpb").read_bytes() == shipped
