"""How long and how often the bench measures: BENCH_RUNS, BENCH_STREAMS, and BENCH_QUICK=1 for a
smoke test."""

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
    # A stream not done by then is an error. At 10,000 streams one service process takes
    # them up over about a minute and a half (each waits in gRPC's queue until then).
    stream_deadline_s: float = 240.0
    concurrencies: tuple[int, ...] = (1, 32)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> BenchConfig:
        env = dict(os.environ if env is None else env)
        quick = env.get("BENCH_QUICK", "") not in ("", "0")
        runs = int(env.get("BENCH_RUNS", "1" if quick else "3"))
        if runs < 1:
            raise ValueError(f"BENCH_RUNS must be at least 1, not {runs}")
        streams = int(env.get("BENCH_STREAMS", "100" if quick else "10000"))
        if streams < 1:
            raise ValueError(f"BENCH_STREAMS must be at least 1, not {streams}")
        if quick:
            return cls(
                runs=runs,
                wrk_s=2,
                warmup_s=1,
                grpc_s=1,
                relay_streams=2,
                relay_tokens=200,
                relay_paced_gap_s=0.001,
                concurrent_streams=streams,
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
            concurrent_streams=streams,
            concurrent_tokens=20,
            concurrent_token_gap_s=0.05,
            concurrent_budget_s=100,
        )
