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
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from flowport.engine.llm import TokenUsage
from flowport.settings import Settings

if TYPE_CHECKING:
    # Types only: the run path counts without loading gRPC (the bench runs it without).
    import grpc

    from flowport.storage import NodeRunRecord

# Read by prometheus-client when a worker creates its first metric: values go to files there.
MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

# Seconds; from a template node's microseconds to an llm node's minutes.
RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
NODE_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300)
GRPC_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
TOKEN_KINDS = ("prompt", "completion", "reasoning")
# How often a worker of `--workers` brings its metrics' files up to date.
SYNC_EVERY_S = 1.0


class Metrics:
    """The service's figures, in a registry of its own (docs/observability.md lists them).

    The run path only adds to plain numbers, kept by label values (`_tally`, `_observe`):
    a run costs a few dictionary additions, not a lock per figure as prometheus-client's
    metrics take. `sync` brings those metrics up to date from the tallies: before each
    scrape of this process's registry, and, with `--workers`, every `SYNC_EVERY_S` from
    a thread of each worker's (`sync_in_background`), the supervisor reading their files.

    Labels are bounded: workflow ids (an account owns a bounded set, and a workflow that
    is not published runs nothing), node types, statuses, models as configured, gRPC
    methods and codes; never run ids, keys or paths."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        # Registered first, so that a scrape syncs before the metrics are read.
        self.registry.register(_SyncBeforeCollecting(self))
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
            "flowport_active_runs", "Runs executing now", registry=r, multiprocess_mode="livesum"
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
        # (metric, *label values) -> its total: counters and gauges.
        self._tallies: dict[tuple[Any, ...], float] = {}
        # (histogram, *label values) -> counts per bucket (the last one +Inf), then the sum.
        self._histograms: dict[tuple[Any, ...], list[float]] = {}
        self._active_runs = 0
        # What `sync` last brought the metrics to.
        self._synced: dict[tuple[Any, ...], Any] = {}
        self._sync_lock = threading.Lock()

    # -- counting: the run path's side, on the event loop ---------------------------------

    def _tally(self, key: tuple[Any, ...], amount: float = 1) -> None:
        tallies = self._tallies
        tallies[key] = tallies.get(key, 0) + amount

    def _observe(self, key: tuple[Any, ...], buckets: tuple[float, ...], amount: float) -> None:
        counts = self._histograms.get(key)
        if counts is None:
            counts = self._histograms[key] = [0.0] * (len(buckets) + 2)
        # The first bucket whose bound is >= amount, as Prometheus' `le` has it.
        counts[bisect_left(buckets, amount)] += 1
        counts[-1] += amount

    # The three below run on every run, the node loop once per node: their additions are
    # written out rather than made through `_tally` and `_observe`, whose calls cost as
    # much as the counting.

    def run_started(self, workflow_id: str, mode: str) -> None:
        tallies = self._tallies
        key = (self.runs_started, workflow_id, mode)
        tallies[key] = tallies.get(key, 0) + 1
        self._active_runs += 1

    def run_ended(
        self, workflow_id: str, status: str, seconds: float, nodes: Iterable[NodeRunRecord]
    ) -> None:
        """Once per run, as its outcome is recorded, with its nodes (skipped ones took no
        time of their own, and are not counted); `run_left` as it leaves."""
        tallies = self._tallies
        key = (self.runs_ended, workflow_id, status)
        tallies[key] = tallies.get(key, 0) + 1
        self._observe((self.run_duration, workflow_id), RUN_BUCKETS, seconds)
        histograms = self._histograms
        node_duration = self.node_duration
        for node in nodes:
            if node.status == "skipped":
                continue
            node_key = (node_duration, node.type, node.status)
            counts = histograms.get(node_key)
            if counts is None:
                counts = histograms[node_key] = [0.0] * (len(NODE_BUCKETS) + 2)
            counts[bisect_left(NODE_BUCKETS, node.time_spend)] += 1
            counts[-1] += node.time_spend

    def run_left(self) -> None:
        self._active_runs -= 1

    def llm_usage(self, model: str, usage: TokenUsage) -> None:
        """One LLM call's tokens, counted once from the usage the provider reports."""
        for kind in TOKEN_KINDS:
            count = usage[f"{kind}_tokens"]  # type: ignore[literal-required]
            if count:
                self._tally((self.tokens, model, kind), count)

    def rate_limited_call(self) -> None:
        self._tally((self.rate_limited,))

    def webhook_delivery(self, outcome: str) -> None:
        self._tally((self.webhook_deliveries, outcome))

    def grpc_call(self, method: str, *, streaming: bool) -> GrpcCall:
        """The counting of one method's calls (`/package.Service/Method`), made once per
        method."""
        return GrpcCall(self, method, streaming=streaming)

    # -- syncing: prometheus-client's metrics brought up to date ---------------------------

    def sync(self) -> None:
        """Adds to each metric what its tally gained since the last sync. Any thread: the
        event loop's thread alone writes the tallies, and each is read in one copy."""
        with self._sync_lock:
            for key, total in list(self._tallies.items()):
                if total != self._synced.get(key, 0):
                    metric = _child(key)
                    if isinstance(metric, Gauge):
                        metric.set(total)
                    else:
                        metric.inc(total - self._synced.get(key, 0))
                    self._synced[key] = total
            for key, counts in list(self._histograms.items()):
                now = list(counts)
                before = self._synced.get(key) or [0.0] * len(now)
                if now == before:
                    continue
                histogram = _child(key)
                # prometheus-client has no call that adds n observations to a bucket; its
                # children's values do (tests/unit/test_metrics.py holds the two equal).
                for bucket, (new, old) in enumerate(zip(now[:-1], before[:-1], strict=True)):
                    if new != old:
                        histogram._buckets[bucket].inc(new - old)
                histogram._sum.inc(now[-1] - before[-1])
                self._synced[key] = now
            self.active_runs.set(self._active_runs)

    def sync_in_background(self, every_s: float = SYNC_EVERY_S) -> Callable[[], None]:
        """Syncs every `every_s` from a thread of its own (a worker of `--workers`, whose
        files the supervisor reads); returns what stops it, after a last sync."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(every_s):
                self.sync()

        thread = threading.Thread(target=loop, name="flowport-metrics-sync", daemon=True)
        thread.start()

        def stopped() -> None:
            stop.set()
            thread.join(timeout=5)
            self.sync()

        return stopped


def _child(key: tuple[Any, ...]) -> Any:
    """The metric, or its child of the label values, a tally's key names."""
    metric, *labels = key
    return metric.labels(*labels) if labels else metric


class _SyncBeforeCollecting(Collector):
    """Syncs the metrics when the registry is collected (a scrape); holds no metric."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        self._metrics.sync()
        return ()

    def describe(self) -> Iterable[Metric]:
        return ()


class GrpcCall:
    """The counting of one method's calls, its label values resolved once."""

    __slots__ = ("_handled", "_handling", "_labels", "_metrics", "_started", "_streams")

    def __init__(self, metrics: Metrics, method: str, *, streaming: bool) -> None:
        service, name = method.lstrip("/").rsplit("/", 1)
        self._metrics = metrics
        self._labels = ("server_stream" if streaming else "unary", service, name)
        self._started = (metrics.grpc_started, *self._labels)
        self._handling = (metrics.grpc_handling, *self._labels)
        self._streams = (metrics.open_streams, name) if streaming else None
        self._handled: dict[grpc.StatusCode, tuple[Any, ...]] = {}

    def started(self) -> None:
        self._metrics._tally(self._started)
        if self._streams is not None:
            self._metrics._tally(self._streams)

    def handled(self, code: grpc.StatusCode, seconds: float) -> None:
        key = self._handled.get(code)
        if key is None:
            key = self._handled[code] = (self._metrics.grpc_handled, *self._labels, code.name)
        self._metrics._tally(key)
        self._metrics._observe(self._handling, GRPC_BUCKETS, seconds)
        if self._streams is not None:
            self._metrics._tally(self._streams, -1)


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
