"""The figures of this checkout against another commit's, side by side:
`python -m tests.bench.versus REV` (`make bench-versus BASE=REV`).

Both run at once as `flowport serve` on free ports, REV from a git worktree put first on
PYTHONPATH (so it shares this checkout's virtualenv: a REV with other dependencies needs its
own), and they are measured in alternating turns, so a difference between two versions is
taken under the same machine load, which on a shared machine moves more between runs than
most single changes do: the blocking route with wrk, then streams against the fake LLM (the
added latency per token, tokens 1 ms apart, and the peak memory of the concurrent streams)."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

from tests.bench import streams
from tests.bench.blocking import wrk_target
from tests.bench.compare import Comparison, side_by_side
from tests.bench.config import BenchConfig
from tests.bench.report import cpu_cell, table
from tests.bench.stats import median, percentile
from tests.bench.targets import Flowport
from tests.fakes.fake_llm_process import FakeLlmProcess
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
    # The installed (editable) package maps flowport.envoy_config to this checkout's envoy/;
    # a link inside REV's package is found first on its PYTHONPATH, so REV renders its own
    # Envoy template and Lua filter, not this checkout's.
    link = path / "services" / "flowport" / "envoy_config"
    if (path / "envoy").is_dir() and not link.exists():
        link.symlink_to(path / "envoy", target_is_directory=True)


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


@dataclasses.dataclass
class StreamFigures:
    """One stack's stream figures, a list of each turn's."""

    token_ms: list[float] = dataclasses.field(default_factory=list)  # p50 added per token
    first_ms: list[float] = dataclasses.field(default_factory=list)  # p50 request to 1st token
    service_mib: list[float] = dataclasses.field(default_factory=list)  # peak RSS, N streams
    envoy_mib: list[float] = dataclasses.field(default_factory=list)
    errors: int = 0


async def streams_side_by_side(
    config: BenchConfig, this: Flowport, base: Flowport, fake: FakeLlmProcess
) -> tuple[StreamFigures, StreamFigures]:
    """Each turn measures one stack then the other (the order alternating), alone."""
    turn_config = dataclasses.replace(config, runs=1)
    figures = (StreamFigures(), StreamFigures())
    for turn in range(config.runs):
        pairs = list(zip((this, base), figures, strict=True))
        for target, into in pairs if turn % 2 == 0 else pairs[::-1]:
            relay = await streams.relay(
                turn_config, target, fake, token_gap_s=config.relay_paced_gap_s
            )
            into.token_ms.append(percentile(relay.token_latency_s, 50) * 1e3)
            into.first_ms.append(percentile(relay.first_stream_s, 50) * 1e3)
            concurrent = await streams.concurrent(turn_config, target, fake)
            into.service_mib.append(concurrent.peak_rss("service") / 2**20)
            into.envoy_mib.append(concurrent.peak_rss("envoy") / 2**20)
            into.errors += sum(relay.errors.values()) + sum(concurrent.errors.values())
    return figures


def render_streams(
    rev: str, config: BenchConfig, ours: StreamFigures, theirs: StreamFigures
) -> str:
    def row(name: str, values: tuple[list[float], list[float]], unit: str) -> list[str]:
        mine, base = median(values[0]), median(values[1])
        return [name, f"{mine:,.2f} {unit}", f"{base:,.2f} {unit}", f"x{mine / base:.2f}"]

    rows = [
        row(
            f"added latency per token, {config.relay_paced_gap_s * 1e3:g} ms apart, p50",
            (ours.token_ms, theirs.token_ms),
            "ms",
        ),
        row("request to first token, p50", (ours.first_ms, theirs.first_ms), "ms"),
        row(
            f"{config.concurrent_streams} streams at once, service peak RSS",
            (ours.service_mib, theirs.service_mib),
            "MiB",
        ),
        row(
            f"{config.concurrent_streams} streams at once, Envoy peak RSS",
            (ours.envoy_mib, theirs.envoy_mib),
            "MiB",
        ),
    ]
    return "\n".join(
        [
            f"this checkout vs {rev}: streamed chat runs against the fake LLM, medians of "
            f"{config.runs} alternating turns; errors: this {ours.errors}, base {theirs.errors}",
            table(["figure", "this", rev, "this/base"], rows),
        ]
    )


async def main(rev: str) -> int:
    config = BenchConfig.from_env()
    # Before the stacks start, which inherit it: each stream is a socket of Envoy's too.
    streams.raise_fd_limit(config.concurrent_streams)
    shutil.rmtree(WORK_DIR, ignore_errors=True)
    WORK_DIR.mkdir(parents=True)
    tree = WORK_DIR / "base-tree"
    await asyncio.to_thread(add_worktree, rev, tree)
    with FakeLlmProcess() as fake:
        return await _measure(config, rev, tree, fake)


async def _measure(config: BenchConfig, rev: str, tree: Path, fake: FakeLlmProcess) -> int:
    this = Flowport(WORK_DIR / "this", llm_base_url=fake.base_url)
    base = Flowport(
        WORK_DIR / "base",
        llm_base_url=fake.base_url,
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
        print(render(rev, comparisons), flush=True)
        stream_figures = await streams_side_by_side(config, this, base, fake)
        print(render_streams(rev, config, *stream_figures))
    finally:
        await asyncio.gather(this.stop(), base.stop())
        await asyncio.to_thread(remove_worktree, tree)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.bench.versus REV")
    sys.exit(asyncio.run(main(sys.argv[1])))
