"""The bench's results as a fixed-width table for people, and as JSON for the README."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.bench.compare import CPU_GROUPS, Comparison, Series
from tests.bench.config import BenchConfig
from tests.bench.stats import median, percentile
from tests.bench.streams import ConcurrentResult, RelayResult
from tests.integration.stack import REPO

MIB = 2**20


@dataclass
class Results:
    config: BenchConfig
    rest: list[Comparison] = field(default_factory=list)
    grpc: list[Comparison] = field(default_factory=list)
    relay: RelayResult | None = None
    relay_paced: RelayResult | None = None
    concurrent: ConcurrentResult | None = None
    scale: Comparison | None = None
    scale_skipped: str | None = None
    elapsed_s: float = 0.0
    measured_at: str = field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds")
    )
    commit: str = field(default_factory=lambda: _commit())
    # The machine is shared: its load before the bench says how far to trust the figures.
    load_before: tuple[float, float, float] = field(default_factory=os.getloadavg)

    @property
    def headline_ratio(self) -> float:
        """ours/ceiling req/s at c=32 through Envoy: the figure a script checks."""
        return next(c.ratio for c in self.rest if c.concurrency == 32)


def _commit() -> str:
    """The commit measured, `+dirty` when the work tree differs from it."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def table(headers: Sequence[str] | None, rows: Sequence[Sequence[str]], indent: str = "  ") -> str:
    """The first column left-aligned (labels), the others right-aligned (figures)."""
    shown = [headers, *rows] if headers else list(rows)
    widths = [max(len(r[i]) for r in shown) for i in range(len(shown[0]))]

    def line(cells: Sequence[str]) -> str:
        parts = [cells[0].ljust(widths[0])]
        parts += [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return (indent + "  ".join(parts)).rstrip()

    return "\n".join(line(row) for row in shown)


def _ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1e3:.2f}"


# CPU time per answered request, read from /proc: it counts work done, so it moves far less
# than req/s when other tenants take the machine.
CPU_HEADER = "CPU us/req svc + envoy"


def cpu_cell(series: Series) -> str:
    """The service's and Envoy's CPU per request, "service + envoy" in microseconds."""
    service, envoy = (series.cpu_us_per_request(group) for group in CPU_GROUPS)
    if math.isnan(service):
        return "n/a"
    return f"{service:,.0f}" + ("" if math.isnan(envoy) else f" + {envoy:,.0f}")


# The columns of _series_row but its last, which says what the row is compared with.
_SERIES_HEADERS = ("target", "conc", "req/s", "p50 ms", "p99 ms", "errors", CPU_HEADER)


def _series_row(name: str, concurrency: int, series: Series, versus: str) -> list[str]:
    return [
        name,
        str(concurrency),
        f"{series.requests_per_s:,.0f}",
        _ms(series.p50_s),
        _ms(series.p99_s),
        str(series.errors),
        cpu_cell(series),
        versus,
    ]


def _versus(comparison: Comparison) -> str:
    difference = comparison.p50_difference_s
    p50 = "n/a" if math.isnan(difference) else f"{difference * 1e3:+.2f} ms"
    return f"x{comparison.ratio:.2f} req/s, p50 {p50}"


def _blocking(comparisons: list[Comparison], ours: str, base: str, versus: str) -> str:
    rows = []
    for comparison in comparisons:
        c = comparison.concurrency
        rows.append(_series_row(ours, c, comparison.ours, _versus(comparison)))
        rows.append(_series_row(base, c, comparison.base, ""))
    return table([*_SERIES_HEADERS, versus], rows) + _silent_notes(
        (name, comparison.concurrency, series)
        for comparison in comparisons
        for name, series in ((ours, comparison.ours), (base, comparison.base))
    )


def _silent_notes(rows: Iterable[tuple[str, int, Series]]) -> str:
    notes = [
        f"\n  ! {name} c={concurrency}: in {series.silent_runs} of {len(series.figures)} runs "
        "no request was answered within the measurement (stalled); p50/p99 are the other runs'"
        for name, concurrency, series in rows
        if series.silent_runs
    ]
    return "".join(notes)


def _percentiles(values: list[float]) -> list[str]:
    if not values:
        return ["n/a", "n/a"]
    return [_ms(percentile(values, 50)), _ms(percentile(values, 99))]


def _errors(errors: Counter[str]) -> str:
    return "; ".join(f"{n} x {kind}" for kind, n in errors.most_common(3)) or "none"


def _relay(relay: RelayResult) -> str:
    rows = [
        [
            "request to first stream event",
            *_percentiles(relay.first_stream_s),
            str(len(relay.first_stream_s)),
        ],
        [
            "added latency per token",
            *_percentiles(relay.token_latency_s),
            str(len(relay.token_latency_s)),
        ],
    ]
    text = table(["client-side", "p50 ms", "p99 ms", "samples"], rows)
    if relay.receive_span_s:
        text += (
            f"\n  the fake wrote a stream's {relay.tokens_per_stream} tokens in "
            f"{_ms(median(relay.write_span_s))} ms, the client received them over "
            f"{_ms(median(relay.receive_span_s))} ms (medians)"
        )
    return text + f"\n  failed streams: {sum(relay.errors.values())} ({_errors(relay.errors)})"


def _concurrent(result: ConcurrentResult) -> str:
    attempted = result.streams * len(result.runs)
    ok = sum(run.ok for run in result.runs)
    rows = [
        ["completed with the right output", f"{ok} of {attempted}"],
        ["errors", _errors(result.errors)],
        ["wall time, all streams", f"{result.wall_s:.2f} s"],
        [
            "one stream, request to end (p50 / p99)",
            f"{_ms(result.duration_s(50))} / {_ms(result.duration_s(99))} ms",
        ],
        [
            "request to first stream event (p50 / p99)",
            f"{_ms(result.first_stream_s(50))} / {_ms(result.first_stream_s(99))} ms",
        ],
    ]
    for group, label in (("service", "service (flowport serve)"), ("envoy", "Envoy")):
        rows.append(
            [
                f"peak RSS, {label}",
                f"{result.peak_rss(group) / MIB:.0f} MiB (idle {result.rss_before(group) / MIB:.0f};"
                f" {result.kib_per_stream(group):.1f} KiB per stream)",
            ]
        )
    rows.append(
        [
            "open-files limit",
            ", ".join(
                f"{group} {'unlimited' if limit is None else limit}"
                for group, limit in result.fd_limits.items()
            ),
        ]
    )
    return table(None, rows)


def render(results: Results) -> str:
    config = results.config
    lines = [
        f"Flowport bench: every figure the median of {config.runs} run(s); ratios and "
        "differences taken side by side within each run, then their median.",
        f"Commit {results.commit}, {os.cpu_count()} CPUs, load average before "
        + " ".join(f"{load:.2f}" for load in results.load_before)
        + ".",
        "",
        f"1. Blocking run: BMI (in -> template -> out), POST /v1/api/workflow/run/{{id}} "
        f"through Envoy; wrk, {config.wrk_s:g} s per figure",
        _blocking(results.rest, "flowport", "ceiling (empty handler)", "flowport vs ceiling"),
        "",
        f"   The same over gRPC directly (WorkflowRunner.Run, Python grpc.aio client, "
        f"{config.grpc_s:g} s per figure)",
        _blocking(results.grpc, "flowport", "ceiling (empty handler)", "flowport vs ceiling"),
        "",
    ]
    for relay in (results.relay, results.relay_paced):
        if relay is None:
            continue
        pace = (
            "with no delay (a burst)"
            if relay.token_gap_s == 0
            else f"{relay.token_gap_s * 1e3:g} ms apart"
        )
        lines += [
            f"2. Streaming relay: chat workflow, fake LLM streaming {relay.tokens_per_stream} "
            f"tokens {pace}, {relay.streams} streams one at a time",
            _relay(relay),
            "",
        ]
    if results.concurrent is not None:
        conc = results.concurrent
        runs = f"{len(conc.runs)} run(s)"
        if conc.budget_cut:
            runs += (
                f" of {config.runs}: the step's {config.concurrent_budget_s:.0f} s budget ran out"
            )
        lines += [
            f"3. Concurrent streams: {conc.streams} SSE chat runs at once, fake LLM "
            f"{conc.tokens} tokens {conc.token_gap_s * 1e3:.0f} ms apart; {runs}",
            _concurrent(conc),
            "",
        ]
    lines.append("4. Scale by processes: blocking REST at c=32, 1 and 2 service processes")
    if results.scale is not None:
        s = results.scale
        rows = [
            _series_row("workers 2", s.concurrency, s.ours, _versus(s)),
            _series_row("workers 1", s.concurrency, s.base, ""),
        ]
        lines.append(
            table([*_SERIES_HEADERS, "2 vs 1"], rows)
            + _silent_notes(
                [("workers 2", s.concurrency, s.ours), ("workers 1", s.concurrency, s.base)]
            )
        )
    else:
        lines.append(f"  n/a: {results.scale_skipped}")
    lines += ["", f"(whole bench: {results.elapsed_s:.0f} s)"]
    return "\n".join(lines)


def as_json(results: Results) -> dict[str, Any]:
    return {
        "measured_at": results.measured_at,
        "commit": results.commit,
        "cpus": os.cpu_count(),
        "load_average_before": results.load_before,
        "config": dataclasses.asdict(results.config),
        "blocking_rest": [c.as_json() for c in results.rest],
        "blocking_grpc": [c.as_json() for c in results.grpc],
        "relay": results.relay.as_json() if results.relay else None,
        "relay_paced": results.relay_paced.as_json() if results.relay_paced else None,
        "concurrent_streams": results.concurrent.as_json() if results.concurrent else None,
        "scale": (results.scale.as_json() if results.scale else {"skipped": results.scale_skipped}),
        "blocking_ceiling_ratio_c32": results.headline_ratio,
        "elapsed_s": results.elapsed_s,
    }


def _known(value: Any) -> Any:
    """NaN (no request finished, so no latency) is not JSON: it is written as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _known(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_known(v) for v in value]
    return value


def write_json(results: Results, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_known(as_json(results)), indent=2, ensure_ascii=False, allow_nan=False)
    path.write_text(text + "\n")


def headline(results: Results) -> str:
    return f"blocking/ceiling c=32: {results.headline_ratio:.2f}"
