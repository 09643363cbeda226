"""Prometheus metrics: the figures the service counts, and the exporter that serves them.

Served by prometheus-client's own small HTTP server on FLOWPORT_METRICS_HOST:PORT (loopback
by default), never by Envoy on the public port. With `serve --workers N` every worker
writes its figures to files in PROMETHEUS_MULTIPROC_DIR, which the supervisor sets to a
fresh folder for them, and the supervisor serves their sum (docs/observability.md)."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from flowport.engine.llm import TokenUsage
from flowport.settings import Settings

# Read by prometheus-client when a worker creates its first metric: values go to files there.
MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

# Seconds; from a template node's microseconds to an llm node's minutes.
RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
NODE_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300)
GRPC_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
TOKEN_KINDS = ("prompt", "completion", "reasoning")


class Metrics:
    """The service's figures, in a registry of its own (docs/observability.md lists them).

    Labels are bounded: workflow ids (an account owns a bounded set, and a workflow that
    is not published runs nothing), node types, statuses, models as configured, gRPC
    methods and codes; never run ids, keys or paths. A metric's labelled children are
    looked up once per label values and kept, so that a run costs a few increments."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.runs_started = Counter(
            "flowport_runs_started", "Runs started", ["workflow_id", "mode"], registry=r
        )
        self.runs_ended = Counter(
            "flowport_runs_ended", "Runs ended, by outcome", ["workflow_id", "status"], registry=r
        )
        self.run_duration = Histogram(
            "flowport_run_duration_seconds",
            "Time from a run's start to its end",
            ["workflow_id"],
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.node_duration = Histogram(
            "flowport_node_duration_seconds",
            "Time a node took, by kind and outcome",
            ["node_type", "status"],
            buckets=NODE_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "flowport_llm_tokens",
            "Tokens LLM calls used, as the provider counted them",
            ["model", "kind"],
            registry=r,
        )
        self.rate_limited = Counter(
            "flowport_rate_limited_calls", "Calls refused by a key's rate limit (429)", registry=r
        )
        self.active_runs = Gauge(
            "flowport_active_runs",
            "Runs executing now",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.open_streams = Gauge(
            "flowport_open_streams",
            "Response-streaming calls open now (SSE streams, RunStream, a run's events)",
            ["grpc_method"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.webhook_deliveries = Counter(
            "flowport_webhook_deliveries",
            "Attempts to deliver a run's end to its webhook, by outcome",
            ["outcome"],
            registry=r,
        )
        self.grpc_started = Counter(
            "grpc_server_started",
            "RPCs started on the server",
            ["grpc_type", "grpc_service", "grpc_method"],
            registry=r,
        )
        self.grpc_handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, whatever their status",
            ["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
            registry=r,
        )
        self.grpc_handling = Histogram(
            "grpc_server_handling_seconds",
            "Time an RPC took until the server finished it",
            ["grpc_type", "grpc_service", "grpc_method"],
            buckets=GRPC_BUCKETS,
            registry=r,
        )
        self._children: dict[tuple[object, ...], Any] = {}

    def _child(self, metric: Any, *values: str) -> Any:
        key = (metric, *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def run_started(self, workflow_id: str, mode: str) -> None:
        self._child(self.runs_started, workflow_id, mode).inc()
        self.active_runs.inc()

    def run_ended(self, workflow_id: str, status: str, seconds: float) -> None:
        """Once per run, as its outcome is recorded; `active_runs` goes down as it leaves."""
        self._child(self.runs_ended, workflow_id, status).inc()
        self._child(self.run_duration, workflow_id).observe(seconds)

    def node_finished(self, node_type: str, status: str, seconds: float) -> None:
        if status != "skipped":
            self._child(self.node_duration, node_type, status).observe(seconds)

    def llm_usage(self, model: str, usage: TokenUsage) -> None:
        """One LLM call's tokens, counted once from the usage the provider reports."""
        for kind in TOKEN_KINDS:
            count = usage[f"{kind}_tokens"]  # type: ignore[literal-required]
            if count:
                self._child(self.tokens, model, kind).inc(count)

    def webhook_delivery(self, outcome: str) -> None:
        self._child(self.webhook_deliveries, outcome).inc()

    def grpc_call(self, method: str, *, streaming: bool) -> GrpcCall:
        """The figures of one method's calls (`/package.Service/Method`), made once per
        method."""
        service, name = method.lstrip("/").rsplit("/", 1)
        kind = "server_stream" if streaming else "unary"
        return GrpcCall(
            self.grpc_started.labels(kind, service, name),
            self.grpc_handling.labels(kind, service, name),
            lambda code: self.grpc_handled.labels(kind, service, name, code.name),
            self.open_streams.labels(name) if streaming else None,
        )


class GrpcCall:
    """One method's labelled children of the gRPC metrics; a status code's made when first
    seen, so that codes a method never returns are no series."""

    __slots__ = ("_handled", "_make_handled", "handling", "open_streams", "started")

    def __init__(
        self,
        started: Any,
        handling: Any,
        make_handled: Callable[[grpc.StatusCode], Any],
        open_streams: Any,
    ) -> None:
        self.started = started
        self.handling = handling
        self.open_streams = open_streams
        self._make_handled = make_handled
        self._handled: dict[grpc.StatusCode, Any] = {}

    def handled(self, code: grpc.StatusCode, seconds: float) -> None:
        child = self._handled.get(code)
        if child is None:
            child = self._handled[code] = self._make_handled(code)
        child.inc()
        self.handling.observe(seconds)


@dataclass
class Exporter:
    """The /metrics server of a `flowport serve`, and the folder of its workers' figures."""

    server: WSGIServer
    thread: threading.Thread
    multiproc_dir: Path | None = None

    def worker_gone(self, pid: int) -> None:
        """A worker's gauges of the present (open streams, active runs) are dropped with it."""
        if self.multiproc_dir is not None:
            mark_process_dead(pid, str(self.multiproc_dir))

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
        if self.multiproc_dir is not None:
            shutil.rmtree(self.multiproc_dir, ignore_errors=True)


def prepare_workers_dir() -> Path:
    """A fresh folder for the workers' figures, named to the workers through the environment
    they inherit (the supervisor counts nothing itself)."""
    folder = Path(tempfile.mkdtemp(prefix="flowport-metrics-"))
    os.environ[MULTIPROC_DIR_VARIABLE] = str(folder)
    return folder


def start_exporter(
    settings: Settings, registry: CollectorRegistry | None, *, workers_dir: Path | None = None
) -> Exporter | None:
    """Serves `registry` (or, with `workers_dir`, the sum of the workers' files) at /metrics;
    None when FLOWPORT_METRICS_PORT is 0."""
    if settings.metrics_port == 0:
        return None
    if workers_dir is not None:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(workers_dir))
    assert registry is not None
    try:
        server, thread = start_http_server(
            settings.metrics_port, addr=settings.metrics_host, registry=registry
        )
    except OSError as error:
        raise RuntimeError(
            f"cannot serve metrics on {settings.metrics_host}:{settings.metrics_port} ({error}); "
            "set FLOWPORT_METRICS_PORT to a free port, or to 0 for none"
        ) from error
    return Exporter(server=server, thread=thread, multiproc_dir=workers_dir)
