"""Blocking BMI runs: Flowport against the ceiling through Envoy (wrk) and over gRPC directly,
and one service process against two."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from tests.bench import grpc_load, procs, wrk
from tests.bench.compare import Comparison, Costed, Figure, Measure, side_by_side
from tests.bench.config import BenchConfig
from tests.bench.targets import BMI_INPUT, BMI_OUTPUT, Ceiling, Flowport


def _progress(target: str, concurrency: int, figure: Figure) -> None:
    cpu = ""
    if isinstance(figure, Costed):
        cpu = ", CPU per request " + ", ".join(
            f"{name} {us:,.0f} us" for name, us in figure.cpu_us_per_request.items()
        )
    print(
        f"bench:   {target} c={concurrency}: {figure.requests_per_s:,.0f} req/s, "
        f"p50 {figure.p50_s * 1e3:.2f} ms, p99 {figure.p99_s * 1e3:.2f} ms, "
        f"{figure.errors} errors{cpu}",
        file=sys.stderr,
        flush=True,
    )


BMI_BODY = json.dumps({"input": BMI_INPUT}, separators=(",", ":"))
SCALE_CONCURRENCY = 32
NAMES = ("flowport", "ceiling")


Processes = Callable[[], dict[str, list[int]]]  # the target's process ids by group


class _Counted(Figure, Protocol):
    @property
    def requests(self) -> int: ...


async def _with_cpu(measurement: Awaitable[_Counted], processes: Processes | None) -> Figure:
    """The measurement, with the CPU time its target's processes used per answered request."""
    groups = processes() if processes is not None else {}
    before = {name: procs.cpu_seconds(pids) for name, pids in groups.items()}
    figure = await measurement
    if not groups or figure.requests == 0:
        return figure
    used = {name: procs.cpu_seconds(pids) - before[name] for name, pids in groups.items()}
    return Costed(figure, {name: s / figure.requests * 1e6 for name, s in used.items()})


def wrk_target(
    url: str, script: Path, key: str, duration_s: float, processes: Processes | None = None
) -> Measure:
    # The ceiling gets the key too, so both sides receive the same bytes.
    headers = {"Content-Type": "application/json", "X-API-KEY": key}
    script.write_text(wrk.post_script(BMI_BODY, headers))

    async def measure(concurrency: int) -> Figure:
        run = wrk.run(url, script=script, connections=concurrency, duration_s=duration_s)
        figure = await _with_cpu(run, processes)
        _progress(url, concurrency, figure)
        return figure

    return measure


def _grpc_target(
    target: str, workflow_id: str, key: str, duration_s: float, processes: Processes
) -> Measure:
    request = grpc_load.bmi_request(workflow_id, BMI_INPUT)

    async def measure(concurrency: int) -> Figure:
        run = grpc_load.run_load(
            target, request, key=key, concurrency=concurrency, duration_s=duration_s
        )
        figure = await _with_cpu(run, processes)
        _progress(target, concurrency, figure)
        return figure

    return measure


async def rest(
    config: BenchConfig, flowport: Flowport, ceiling: Ceiling, work_dir: Path
) -> list[Comparison]:
    """FlowAI's `POST /v1/api/workflow/run/{id}` through Envoy, wrk on both sides."""
    ours_url = flowport.base_url + flowport.bmi_path
    base_url = ceiling.base_url + ceiling.path
    ours = wrk_target(
        ours_url, work_dir / "flowport.lua", flowport.key, config.wrk_s, flowport.processes
    )
    base = wrk_target(
        base_url, work_dir / "ceiling.lua", flowport.key, config.wrk_s, ceiling.processes
    )
    # Unreported, one connection: caches and connections settle before the first figure.
    for url, name in ((ours_url, "flowport"), (base_url, "ceiling")):
        warm = wrk_target(url, work_dir / f"{name}-warmup.lua", flowport.key, config.warmup_s)
        await warm(1)
    return await side_by_side(
        ours, base, concurrencies=config.concurrencies, runs=config.runs, names=NAMES
    )


async def grpc_direct(
    config: BenchConfig, flowport: Flowport, ceiling: Ceiling
) -> list[Comparison]:
    """`WorkflowRunner.Run` straight to each gRPC server, no Envoy, a Python client."""
    workflow_id = flowport.workflow_ids["BMI"]
    ours = _grpc_target(
        flowport.grpc_target, workflow_id, flowport.key, config.grpc_s, flowport.processes
    )
    base = _grpc_target(
        ceiling.grpc_target, workflow_id, flowport.key, config.grpc_s, ceiling.processes
    )
    for target, processes in (
        (flowport.grpc_target, flowport.processes),
        (ceiling.grpc_target, ceiling.processes),
    ):
        request = grpc_load.bmi_request(workflow_id, BMI_INPUT)
        failed = await grpc_load.check(target, request, key=flowport.key, expected=BMI_OUTPUT)
        if failed:
            print(f"bench:   {target} failed a first call: {failed}", file=sys.stderr)
        warm = _grpc_target(target, workflow_id, flowport.key, config.warmup_s / 2, processes)
        await warm(1)
    return await side_by_side(
        ours, base, concurrencies=config.concurrencies, runs=config.runs, names=NAMES
    )


async def scale(config: BenchConfig, one: Flowport, two: Flowport, work_dir: Path) -> Comparison:
    """The REST figure at c=32 with two service processes (ours) against one (base)."""
    ours_url = two.base_url + two.bmi_path
    base_url = one.base_url + one.bmi_path
    ours = wrk_target(ours_url, work_dir / "workers-2.lua", two.key, config.wrk_s, two.processes)
    base = wrk_target(base_url, work_dir / "workers-1.lua", one.key, config.wrk_s, one.processes)
    for url, stack, name in ((ours_url, two, "workers-2"), (base_url, one, "workers-1")):
        warm = wrk_target(url, work_dir / f"{name}-warmup.lua", stack.key, config.warmup_s)
        await warm(1)
    (comparison,) = await side_by_side(
        ours,
        base,
        concurrencies=[SCALE_CONCURRENCY],
        runs=config.runs,
        names=("workers_2", "workers_1"),
    )
    return comparison
