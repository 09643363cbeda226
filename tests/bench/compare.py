"""Two targets measured side by side: in every run both are measured back to back, in turns
that alternate, so that a ratio compares figures taken under the same machine load."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tests.bench import stats
from tests.bench.stats import median


class Figure(Protocol):
    """One measurement of one target: what wrk and the gRPC load both report."""

    @property
    def requests_per_s(self) -> float: ...
    @property
    def p50_s(self) -> float: ...
    @property
    def p99_s(self) -> float: ...
    @property
    def errors(self) -> int: ...


Measure = Callable[[int], Awaitable[Figure]]  # concurrency -> one measurement
CPU_GROUPS = ("service", "envoy")


@dataclass(frozen=True)
class Costed:
    """A figure with the CPU time each group of the target's processes (the service, Envoy)
    used per answered request while it was measured. CPU per request moves far less than
    requests/s when other tenants take the machine's CPU: it counts only work done."""

    figure: Figure
    cpu_us_per_request: dict[str, float]

    @property
    def requests_per_s(self) -> float:
        return self.figure.requests_per_s

    @property
    def p50_s(self) -> float:
        return self.figure.p50_s

    @property
    def p99_s(self) -> float:
        return self.figure.p99_s

    @property
    def errors(self) -> int:
        return self.figure.errors


@dataclass
class Series:
    """One target at one concurrency, over the runs."""

    figures: list[Figure] = field(default_factory=list)

    @property
    def requests_per_s(self) -> float:
        return median([f.requests_per_s for f in self.figures])

    @property
    def p50_s(self) -> float:
        return median([f.p50_s for f in self.figures])

    @property
    def p99_s(self) -> float:
        return median([f.p99_s for f in self.figures])

    @property
    def errors(self) -> int:
        return sum(f.errors for f in self.figures)

    def cpu_us_per_request(self, group: str) -> float:
        """The median over the runs that measured it; NaN if none did."""
        return median(
            [
                f.cpu_us_per_request[group]
                for f in self.figures
                if isinstance(f, Costed) and group in f.cpu_us_per_request
            ]
        )

    @property
    def silent_runs(self) -> int:
        """Runs in which no request was answered in time: there is no latency to report."""
        return sum(1 for f in self.figures if f.requests_per_s == 0)

    def as_json(self) -> dict[str, Any]:
        return {
            "requests_per_s": self.requests_per_s,
            "p50_ms": self.p50_s * 1e3,
            "p99_ms": self.p99_s * 1e3,
            "errors": self.errors,
            "silent_runs": self.silent_runs,
            "cpu_us_per_request": {group: self.cpu_us_per_request(group) for group in CPU_GROUPS},
            "runs": [
                {
                    "requests_per_s": f.requests_per_s,
                    "p50_ms": f.p50_s * 1e3,
                    "p99_ms": f.p99_s * 1e3,
                    "errors": f.errors,
                    "cpu_us_per_request": getattr(f, "cpu_us_per_request", None),
                }
                for f in self.figures
            ],
        }


@dataclass
class Comparison:
    concurrency: int
    names: tuple[str, str] = ("ours", "base")  # how the JSON calls ours and base
    ours: Series = field(default_factory=Series)
    base: Series = field(default_factory=Series)

    @property
    def ratios(self) -> list[float]:
        """ours/base req/s, one per run."""
        return [stats.ratio(o.requests_per_s, b.requests_per_s) for o, b in self._pairs()]

    @property
    def p50_differences_s(self) -> list[float]:
        return [o.p50_s - b.p50_s for o, b in self._pairs()]

    @property
    def ratio(self) -> float:
        return median(self.ratios)

    @property
    def p50_difference_s(self) -> float:
        return median(self.p50_differences_s)

    def _pairs(self) -> list[tuple[Figure, Figure]]:
        return list(zip(self.ours.figures, self.base.figures, strict=True))

    def as_json(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            self.names[0]: self.ours.as_json(),
            self.names[1]: self.base.as_json(),
            "ratio_of": f"{self.names[0]}/{self.names[1]}",
            "ratio_requests_per_s": self.ratio,
            "ratios": self.ratios,
            "p50_difference_ms": self.p50_difference_s * 1e3,
        }


async def side_by_side(
    ours: Measure,
    base: Measure,
    *,
    concurrencies: Sequence[int],
    runs: int,
    names: tuple[str, str],
) -> list[Comparison]:
    comparisons = [Comparison(concurrency=c, names=names) for c in concurrencies]
    for run in range(runs):
        for comparison in comparisons:
            # Turns alternate between runs, so neither side always meets a warmer machine.
            if run % 2 == 0:
                mine = await ours(comparison.concurrency)
                theirs = await base(comparison.concurrency)
            else:
                theirs = await base(comparison.concurrency)
                mine = await ours(comparison.concurrency)
            comparison.ours.figures.append(mine)
            comparison.base.figures.append(theirs)
    return comparisons
