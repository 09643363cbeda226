"""What one outbound fetch (an http node's call, a fetched file) costs the event loop:
`python -m tests.bench.fetch_stall [N]`.

N fetches, one after another, of a small answer from a local HTTP server (in a thread of
this process), while a task that sleeps 1 ms at a time watches the loop: the longest gap
between its wake-ups is how long every other run and stream in the process would have been
held. To compare a commit, put its tree first: `PYTHONPATH=<worktree>/services:. python -m
tests.bench.fetch_stall`."""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

import uvloop

from flowport.outbound import fetch
from tests.fakes.fake_http import FakeHttp

TICK_S = 0.001


async def measure(count: int) -> dict[str, float]:
    with FakeHttp() as http:
        url = http.url("/text")

        async def one() -> None:
            answer = await fetch(url, timeout_s=5, max_bytes=10_000, allow=["127.0.0.1"])
            if answer.text != "plain text":
                raise RuntimeError(f"the fetch answered {answer.status} {answer.text!r}")

        await one()  # first use: imports and connections settle
        gaps: list[float] = []
        done = asyncio.Event()

        async def watch() -> None:
            last = time.perf_counter()
            while not done.is_set():
                await asyncio.sleep(TICK_S)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.05)
        cpu, wall = time.thread_time(), time.perf_counter()
        for _ in range(count):
            await one()
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
        done.set()
        await watcher
    return {
        "loop_cpu_ms": cpu / count * 1e3,
        "wall_ms": wall / count * 1e3,
        "longest_gap_ms": max(gaps) * 1e3,
        "median_gap_ms": statistics.median(gaps) * 1e3,
    }


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    figures = uvloop.run(measure(count))
    print(
        f"{count} fetches: {figures['loop_cpu_ms']:.2f} ms of the event loop's CPU and"
        f" {figures['wall_ms']:.2f} ms each; a {TICK_S * 1e3:g} ms ticker's longest gap"
        f" {figures['longest_gap_ms']:.1f} ms (median {figures['median_gap_ms']:.2f} ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
