"""What the serving process of `flowport serve` holds: start-up's one-time tools run in a child."""

from __future__ import annotations

from pathlib import Path

from tests.integration.stack import Stack


def test_protoc_builds_envoys_descriptors_in_a_child_not_in_the_serving_process(
    stack: Stack,
) -> None:
    # Loaded into the serving process, protoc (grpc_tools) would hold ~9 MiB of its memory for
    # a file written once per start (README, Performance).
    assert stack.process is not None
    maps = Path(f"/proc/{stack.process.pid}/maps").read_text()
    assert "cygrpc" in maps  # the serving process itself, with grpc loaded
    assert "_protoc_compiler" not in maps
    assert (stack.data_dir / "envoy" / "flowport.pb").stat().st_size > 0
