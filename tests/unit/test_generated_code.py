"""The committed protobuf code is what proto/ generates now: nobody edited it, nobody forgot it."""

from __future__ import annotations

from flowport.protos import stale_generated_files


def test_generated_code_is_current() -> None:
    assert stale_generated_files() == []
