"""CPU per blocking run in one process, without gRPC or Envoy: admission and execution to the
end of the BMI workflow on a fresh SQLite file, `python -m tests.bench.run_path REV`
(`make bench-run-path BASE=REV`).

This checkout and REV (from a git worktree, first on PYTHONPATH) run in turns, each turn a
process of its own, and the medians of the turns are compared: a change to the run path is
seen here when the whole stack's noise hides it. Figures: CPU of the event loop's thread,
CPU of the whole process (the database thread too) and wall time, each per run, at 1 and 32
runs at once, for an unlimited account and for one with credits (which spends one a run)."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.bench.versus import WORK_DIR, add_worktree, remove_worktree
from tests.integration.stack import REPO

TURNS = int(os.environ.get("BENCH_RUNS", "5"))
CASES = ((1, 1500, False), (32, 3000, False), (1, 500, True), (32, 1000, True))
WARM_UP_RUNS = 100


async def _measure(concurrency: int, runs: int, limited: bool) -> dict[str, float]:
    """One turn, in this process: the CPU and wall time per run, in microseconds."""
    from flowport.auth import Authenticator
    from flowport.demo import DEMO_ACCOUNT, seed
    from flowport.settings import Settings
    from flowport.storage import Database, set_credits
    from tests.bench.targets import BMI_INPUT, BMI_OUTPUT

    data_dir = Path(tempfile.mkdtemp(prefix="flowport-run-path-"))
    db = Database.connect(f"sqlite:///{data_dir / 'flowport.db'}")
    await db.migrate()
    key, workflow_ids = await seed(db)
    if limited:
        async with db.session() as session:
            await set_credits(session, name=DEMO_ACCOUNT, credits=10**9)
    principal = await Authenticator(db).authenticate(key)
    admit, run_to_end, close = _run_path(db, Settings(data_dir=data_dir))
    workflow_id = workflow_ids["BMI"]

    # A blocking call: `mode` since background runs came, `blocking` before.
    blocking = (
        {"mode": "blocking"}
        if "mode" in inspect.signature(admit).parameters
        else {"blocking": True}
    )

    async def one() -> None:
        run = await admit(
            principal, workflow_id=workflow_id, raw_input=BMI_INPUT, session_id=None, **blocking
        )
        if (await run_to_end(run)).output != BMI_OUTPUT:
            raise RuntimeError("the BMI workflow answered wrong")

    async def runner(count: int) -> None:
        for _ in range(count):
            await one()

    async def all_at_once(total: int) -> None:
        await asyncio.gather(*(runner(total // concurrency) for _ in range(concurrency)))

    await all_at_once(WARM_UP_RUNS)
    total = runs // concurrency * concurrency
    process, thread, wall = time.process_time(), time.thread_time(), time.perf_counter()
    await all_at_once(total)
    process, thread, wall = (
        time.process_time() - process,
        time.thread_time() - thread,
        time.perf_counter() - wall,
    )
    await close()
    await db.dispose()
    return {
        "loop_cpu_us": thread / total * 1e6,
        "process_cpu_us": process / total * 1e6,
        "wall_us": wall / total * 1e6,
    }


def _run_path(db: Any, settings: Any) -> tuple[Any, Any, Any]:
    """(admit, run_to_end, close) of the checkout on PYTHONPATH: this one's run path, or a
    commit's from before it was split into admission, execution and the recorder."""
    try:
        from flowport.run_path import RunPath
    except ImportError:
        from flowport.running import RunService  # type: ignore[import-not-found]

        service = RunService(db=db, llm=None, settings=settings)
        return service.prepare, service.run_to_end, service.aclose
    from flowport.outbound import FetchPolicy, Outbound

    outbound = Outbound(FetchPolicy.from_settings(settings))
    build = {}
    if "jobs" in inspect.signature(RunPath.build).parameters:
        # Jobs deferred but never taken: a blocking run defers none.
        from flowport.jobs import open_jobs

        build["jobs"] = open_jobs(
            db, replica_id="rep_bench", concurrency=0, grace_s=0.0, lease_s=30.0
        )
    runs = RunPath.build(settings, db, replica_id="rep_bench", llm=None, outbound=outbound, **build)

    async def close() -> None:
        await runs.recorder.close()
        await outbound.aclose()

    return runs.admission.admit, runs.execution.run_to_end, close


def _turn(services: Path, concurrency: int, runs: int, limited: bool) -> dict[str, float]:
    """One turn in a child process whose `flowport` comes from `services`."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(services), str(REPO)])}
    args = [str(concurrency), str(runs), "limited" if limited else "unlimited"]
    child = [sys.executable, "-m", "tests.bench.run_path", "--turn", *args]
    done = subprocess.run(child, env=env, cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def main(rev: str) -> int:
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    tree = WORK_DIR / "run-path-tree"
    add_worktree(rev, tree)
    print(
        f"this checkout vs {rev}: one blocking BMI run in one process (prepare + run_to_end),"
        f" medians of {TURNS} alternating turns, us per run"
    )
    print("  conc  account    this loop  base loop  this/base   this wall  base wall")
    try:
        for concurrency, runs, limited in CASES:
            this: list[dict[str, float]] = []
            base: list[dict[str, float]] = []
            for turn in range(TURNS):
                # Turns alternate, so neither side always meets a warmer machine.
                sides = [(this, REPO / "services"), (base, tree / "services")]
                for figures, services in sides if turn % 2 == 0 else sides[::-1]:
                    figures.append(_turn(services, concurrency, runs, limited))
            ours = {name: statistics.median(f[name] for f in this) for name in this[0]}
            theirs = {name: statistics.median(f[name] for f in base) for name in base[0]}
            print(
                f"  {concurrency:4d}  {'limited' if limited else 'unlimited':9s}"
                f"  {ours['loop_cpu_us']:9,.0f}  {theirs['loop_cpu_us']:9,.0f}"
                f"  {'x' + format(ours['loop_cpu_us'] / theirs['loop_cpu_us'], '.2f'):>9}"
                f"  {ours['wall_us']:10,.0f}  {theirs['wall_us']:9,.0f}",
                flush=True,
            )
    finally:
        remove_worktree(tree)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--turn":
        import uvloop

        concurrency, runs, account = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
        figures = uvloop.run(_measure(concurrency, runs, account == "limited"))
        print(json.dumps(figures))
        sys.exit(0)
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.bench.run_path REV")
    sys.exit(main(sys.argv[1]))
