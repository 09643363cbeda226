"""The blocking figures of this checkout against another commit's, side by side:
`python -m tests.bench.versus REV` (`make bench-versus BASE=REV`).

Both run at once as `flowport serve` on free ports, REV from a git worktree put first on
PYTHONPATH (so it shares this checkout's virtualenv: a REV with other dependencies needs its
own), and wrk measures them in alternating turns, so a difference between two versions is
taken under the same machine load, which on a shared machine moves more between runs than
most single changes do."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

from tests.bench.blocking import wrk_target
from tests.bench.compare import Comparison, side_by_side
from tests.bench.config import BenchConfig
from tests.bench.report import cpu_cell, table
from tests.bench.targets import Flowport
from tests.integration.stack import REPO

WORK_DIR = REPO / ".flowport" / "bench-versus"
CONCURRENCIES = (1, 32)


def remove_worktree(path: Path) -> None:
    subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=REPO, check=False)


def add_worktree(rev: str, path: Path) -> None:
    if path.exists():
        remove_worktree(path)
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(path), rev],
        cwd=REPO,
        check=True,
        capture_output=True,
    )


def render(rev: str, comparisons: list[Comparison]) -> str:
    lines = [
        f"this checkout vs {rev}: blocking BMI through Envoy, wrk, medians of "
        f"{len(comparisons[0].ours.figures)} alternating runs",
    ]
    rows = [
        [
            str(c.concurrency),
            f"{c.ours.requests_per_s:,.0f}",
            f"{c.ours.p50_s * 1e3:.2f}",
            cpu_cell(c.ours),
            f"{c.base.requests_per_s:,.0f}",
            f"{c.base.p50_s * 1e3:.2f}",
            cpu_cell(c.base),
            f"x{c.ratio:.2f}",
            f"{c.p50_difference_s * 1e3:+.2f} ms",
        ]
        for c in comparisons
    ]
    headers = ["conc", "this req/s", "p50 ms", "this CPU us/req", "base req/s", "p50 ms"]
    headers += ["base CPU us/req", "this/base req/s", "p50 difference"]
    lines.append(table(headers, rows))
    lines.append("  (CPU us/req: the service's + Envoy's CPU time per answered request)")
    return "\n".join(lines)


async def main(rev: str) -> int:
    config = BenchConfig.from_env()
    shutil.rmtree(WORK_DIR, ignore_errors=True)
    WORK_DIR.mkdir(parents=True)
    tree = WORK_DIR / "base-tree"
    await asyncio.to_thread(add_worktree, rev, tree)
    this = Flowport(WORK_DIR / "this", llm_base_url=None)
    base = Flowport(
        WORK_DIR / "base",
        llm_base_url=None,
        extra_env={"PYTHONPATH": str(tree / "services")},
    )
    try:
        await asyncio.gather(this.start(), base.start())
        ours = wrk_target(
            this.base_url + this.bmi_path,
            WORK_DIR / "this.lua",
            this.key,
            config.wrk_s,
            this.processes,
        )
        theirs = wrk_target(
            base.base_url + base.bmi_path,
            WORK_DIR / "base.lua",
            base.key,
            config.wrk_s,
            base.processes,
        )
        for warm in (ours, theirs):
            await warm(1)
        comparisons = await side_by_side(
            ours, theirs, concurrencies=CONCURRENCIES, runs=config.runs, names=("this", rev)
        )
    finally:
        await asyncio.gather(this.stop(), base.stop())
        await asyncio.to_thread(remove_worktree, tree)
    print(render(rev, comparisons))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.bench.versus REV")
    sys.exit(asyncio.run(main(sys.argv[1])))
