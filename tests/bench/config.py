"""How long and how often the bench measures: BENCH_RUNS, and BENCH_QUICK=1 for a smoke test."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class BenchConfig:
    runs: int  # every figure is the median of this many runs
    wrk_s: float  # one wrk measurement
    warmup_s: float  # unreported load before each target's first measurement
    grpc_s: float  # one direct gRPC measurement
    relay_streams: int  # streamed chat runs per relay run
    relay_tokens: int
    # The second relay figure: tokens this far apart, 1,000 a second, faster than hosted
    # models stream; the first writes them all at once.
    relay_paced_gap_s: float
    concurrent_streams: int
    concurrent_tokens: int
    concurrent_token_gap_s: float
    # A slow service must not stretch the bench past its few minutes: runs of the concurrent
    # step go on only while they fit in this budget (the first one always runs).
    concurrent_budget_s: float
    stream_deadline_s: float = 120.0  # a stream not done by then is an error
    concurrencies: tuple[int, ...] = (1, 32)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> BenchConfig:
        env = dict(os.environ if env is None else env)
        quick = env.get("BENCH_QUICK", "") not in ("", "0")
        runs = int(env.get("BENCH_RUNS", "1" if quick else "3"))
        if runs < 1:
            raise ValueError(f"BENCH_RUNS must be at least 1, not {runs}")
        if quick:
            return cls(
                runs=runs,
                wrk_s=2,
                warmup_s=1,
                grpc_s=1,
                relay_streams=2,
                relay_tokens=200,
                relay_paced_gap_s=0.001,
                concurrent_streams=100,
                concurrent_tokens=20,
                concurrent_token_gap_s=0.05,
                concurrent_budget_s=30,
            )
        return cls(
            runs=runs,
            wrk_s=5,
            warmup_s=2,
            grpc_s=3,
            relay_streams=10,
            relay_tokens=200,
            relay_paced_gap_s=0.001,
            concurrent_streams=1000,
            concurrent_tokens=20,
            concurrent_token_gap_s=0.05,
            concurrent_budget_s=100,
        )
