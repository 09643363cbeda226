"""The run path adds to plain tallies, which `Metrics.sync` carries into prometheus-client's
metrics: what a scrape shows must be what observing each figure directly would have shown."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from flowport.engine import NodeFinished
from flowport.metrics import NODE_BUCKETS, RUN_BUCKETS, Metrics
from flowport.storage import NodeRunRecord

# Below, on and above bucket bounds, and past the last one.
DURATIONS = (0.0, 0.0005, 0.0007, 0.001, 0.3, 1, 299.9, 300, 1e6)


def node(node_type: str, status: str, seconds: float) -> NodeRunRecord:
    return NodeFinished(
        node_id="n",
        type=node_type,
        name="n",
        status=status,
        started_at=datetime.now(UTC),
        time_spend=seconds,
        inputs=None,
        output=None,
        error=None,
    )


def exposition(registry: CollectorRegistry) -> list[str]:
    lines = generate_latest(registry).decode().splitlines()
    return sorted(line for line in lines if not line.startswith("#") and "_created" not in line)


def test_synced_histograms_equal_observed_ones() -> None:
    metrics = Metrics()
    direct = CollectorRegistry()
    nodes = Histogram(
        "flowport_node_duration_seconds",
        "",
        ["node_type", "status"],
        buckets=NODE_BUCKETS,
        registry=direct,
    )
    runs = Histogram(
        "flowport_run_duration_seconds", "", ["workflow_id"], buckets=RUN_BUCKETS, registry=direct
    )
    for seconds in DURATIONS:
        ran = [node("llm", "succeeded", seconds), node("in", "skipped", 0.0)]
        metrics.run_ended("wf_a", "failed", seconds, ran)
        runs.labels("wf_a").observe(seconds)
        # A skipped node took no time of its own: not counted.
        nodes.labels("llm", "succeeded").observe(seconds)
    shown = exposition(metrics.registry)
    for line in exposition(direct):
        assert line in shown


def test_counters_and_gauges_follow_every_sync() -> None:
    metrics = Metrics()
    metrics.run_started("wf_a", "stream")
    metrics.run_started("wf_a", "stream")
    metrics.llm_usage(
        "m", {"prompt_tokens": 7, "completion_tokens": 3, "reasoning_tokens": 0, "total_tokens": 10}
    )
    call = metrics.grpc_call("/flowport.v1.FlowAi/RunWorkflow", streaming=True)
    call.started()
    shown = exposition(metrics.registry)
    assert 'flowport_runs_started_total{mode="stream",workflow_id="wf_a"} 2.0' in shown
    assert "flowport_active_runs 2.0" in shown
    assert 'flowport_open_streams{grpc_method="RunWorkflow"} 1.0' in shown
    assert 'flowport_llm_tokens_total{kind="prompt",model="m"} 7.0' in shown
    assert not [line for line in shown if 'kind="reasoning"' in line]

    metrics.run_left()
    metrics.run_started("wf_a", "stream")
    call.handled(grpc.StatusCode.NOT_FOUND, 0.002)
    metrics.rate_limited_call()
    shown = exposition(metrics.registry)
    assert 'flowport_runs_started_total{mode="stream",workflow_id="wf_a"} 3.0' in shown
    assert "flowport_active_runs 2.0" in shown
    assert 'flowport_open_streams{grpc_method="RunWorkflow"} 0.0' in shown
    assert "flowport_rate_limited_calls_total 1.0" in shown
    assert (
        'grpc_server_handled_total{grpc_code="NOT_FOUND",grpc_method="RunWorkflow",'
        'grpc_service="flowport.v1.FlowAi",grpc_type="server_stream"} 1.0'
    ) in shown
