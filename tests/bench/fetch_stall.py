"""What one outbound fetch (an http node's call, a fetched file) costs the event loop:
`python -m tests.bench.fetch_stall [N]`.

N fetches, one after another, of a small answer from a local HTTP server (in a thread of
this process), while a task that sleeps 1 ms at a time watches the loop: the longest gap
between its wake-ups is how long every other run and stream in the process would have been
held. First through `fetch` (a connection per call), then through one `Outbound`, as the
service fetches (idempotent calls keep their connection). To compare a commit, put its tree
first: `PYTHONPATH=<worktree>/services:. python -m tests.bench.fetch_stall` (before
`Outbound`, 2026-12, only the first figure)."""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import uvloop

from flowport import outbound
from tests.fakes.fake_http import FakeHttp

TICK_S = 0.001


Fetch = Callable[[str], Awaitable[outbound.FetchedResponse]]


async def one_off(url: str) -> outbound.FetchedResponse:
    """A fetch through a client used once, as every fetch was before `Outbound`."""
    if not hasattr(outbound, "Outbound"):  # a tree from before 2026-12-04's 15ed7fc
        return await outbound.fetch(  # type: ignore[attr-defined,no-any-return]
            url, timeout_s=5, max_bytes=10_000, allow=["127.0.0.1"]
        )
    async with outbound.Outbound(outbound.FetchPolicy(allow=("127.0.0.1",))) as client:
        return await client.fetch(url)


async def measure(count: int, fetch: Fetch) -> dict[str, float]:
    with FakeHttp() as http:
        url = http.url("/text")

        async def one() -> None:
            answer = await fetch(url)
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


async def measure_both(count: int) -> dict[str, dict[str, float]]:
    figures = {"fetch, a connection per call": await measure(count, one_off)}
    if hasattr(outbound, "Outbound"):
        async with outbound.Outbound(outbound.FetchPolicy(allow=("127.0.0.1",))) as client:
            figures["one Outbound, as the service"] = await measure(count, client.fetch)
    return figures


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    for name, figures in uvloop.run(measure_both(count)).items():
        print(
            f"{name}: {count} fetches, {figures['loop_cpu_ms']:.2f} ms of the event loop's"
            f" CPU and {figures['wall_ms']:.2f} ms each; a {TICK_S * 1e3:g} ms ticker's"
            f" longest gap {figures['longest_gap_ms']:.1f} ms (median"
            f" {figures['median_gap_ms']:.2f} ms)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
