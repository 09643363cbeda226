"""`python -m tests.bench` (`make bench`): starts Flowport and the ceiling on free ports,
measures, prints the table; its last line is `blocking/ceiling c=32: R`."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import time
from collections.abc import AsyncIterator

from tests.bench import blocking, streams, wrk
from tests.bench.config import BenchConfig
from tests.bench.report import Results, headline, render, write_json
from tests.bench.targets import Ceiling, Flowport, serve_supports_workers
from tests.fakes.fake_llm_process import FakeLlmProcess
from tests.integration.stack import REPO

WORK_DIR = REPO / ".flowport" / "bench"
RESULTS_JSON = REPO / ".flowport" / "bench.json"


def progress(message: str) -> None:
    # stderr: stdout is the table, and its last line is for scripts.
    print(f"bench: {message}", file=sys.stderr, flush=True)


@contextlib.asynccontextmanager
async def started(target: Flowport | Ceiling) -> AsyncIterator[None]:
    try:
        await target.start()
        yield
    except BaseException:
        print(target.log(), file=sys.stderr)
        raise
    finally:
        await target.stop()


async def main() -> int:
    config = BenchConfig.from_env()
    wrk.wrk_path()  # fails early, before anything starts
    # Before the stack starts: Envoy holds a socket per stream too, and inherits the limit.
    streams.raise_fd_limit(config.concurrent_streams)
    began = time.perf_counter()
    shutil.rmtree(WORK_DIR, ignore_errors=True)
    WORK_DIR.mkdir(parents=True)
    results = Results(config=config)
    # The fake LLM in a process of its own: in this one it would take the GIL from the
    # client while it writes, and its time would count as the relay's.
    with FakeLlmProcess() as fake:

        def fresh(name: str, workers: int = 1) -> Flowport:
            # A fresh service for each group of scenarios: a group that leaves the service
            # hurt (held locks, a grown heap) must not colour the next group's figures.
            return Flowport(WORK_DIR / name, llm_base_url=fake.base_url, workers=workers)

        ceiling = Ceiling(WORK_DIR / "ceiling")
        progress(f"starting the ceiling and flowport serve in {WORK_DIR}")
        async with started(ceiling):
            async with started(rest_stack := fresh("flowport-rest")):
                progress("1. blocking runs through Envoy (wrk)")
                results.rest = await blocking.rest(config, rest_stack, ceiling, WORK_DIR)
            async with started(grpc_stack := fresh("flowport-grpc")):
                progress("1. blocking runs over gRPC directly")
                results.grpc = await blocking.grpc_direct(config, grpc_stack, ceiling)
        if serve_supports_workers():
            progress("4. scale by processes: flowport serve --workers 1 and --workers 2")
            async with started(one := fresh("workers-1")), started(two := fresh("workers-2", 2)):
                results.scale = await blocking.scale(config, one, two, WORK_DIR)
        else:
            results.scale_skipped = "flowport serve has no --workers yet"
        async with started(streams_stack := fresh("flowport-streams")):
            progress("2. streaming relay")
            results.relay = await streams.relay(config, streams_stack, fake)
            progress(f"2. streaming relay, tokens {config.relay_paced_gap_s * 1e3:g} ms apart")
            results.relay_paced = await streams.relay(
                config, streams_stack, fake, token_gap_s=config.relay_paced_gap_s
            )
            progress(f"3. {config.concurrent_streams} concurrent streams")
            results.concurrent = await streams.concurrent(config, streams_stack, fake)
    results.elapsed_s = time.perf_counter() - began
    write_json(results, RESULTS_JSON)
    print(render(results))
    print(f"(results also in {RESULTS_JSON.relative_to(REPO)})")
    print(headline(results))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
