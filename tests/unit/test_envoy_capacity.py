"""Envoy's config takes the streams the bench holds at once (docs/performance.md): an SSE
stream is a request open for its whole run, and Envoy's defaults refuse the 1,025th."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from flowport.envoy import render_config
from flowport.settings import Settings

# What `make bench` holds at once.
STREAMS = 10_000


def _cluster(tmp_path: Path) -> dict[str, Any]:
    text = render_config(
        Settings(data_dir=tmp_path),
        descriptor_path=tmp_path / "flowport.binpb",
        lua_path=tmp_path / "flowport.lua",
        routes_path=tmp_path / "routes.yaml",
    )
    cluster = yaml.safe_load(text)["static_resources"]["clusters"][0]
    assert isinstance(cluster, dict)
    return cluster


def test_the_circuit_breakers_let_every_stream_through(tmp_path: Path) -> None:
    (thresholds,) = _cluster(tmp_path)["circuit_breakers"]["thresholds"]
    for limit in ("max_connections", "max_pending_requests", "max_requests"):
        assert thresholds[limit] >= STREAMS, limit


def test_one_connection_to_the_service_carries_every_stream(tmp_path: Path) -> None:
    options = _cluster(tmp_path)["typed_extension_protocol_options"]
    http = options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["explicit_http_config"]
    assert http["http2_protocol_options"]["max_concurrent_streams"] >= STREAMS
