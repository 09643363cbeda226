"""A closed-loop gRPC load: N tasks, each calling as soon as its last call answered, for a
fixed time. The client is Python too, so it shares the two cores with what it measures."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
from google.protobuf import struct_pb2

from flowport.v1 import runner_pb2, runner_pb2_grpc
from tests.bench.stats import percentile


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    duration_s: float
    latencies_s: list[float]

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s

    @property
    def p50_s(self) -> float:
        return percentile(self.latencies_s, 50) if self.latencies_s else math.nan

    @property
    def p99_s(self) -> float:
        return percentile(self.latencies_s, 99) if self.latencies_s else math.nan


async def closed_loop(
    call: Callable[[], Awaitable[None]], *, concurrency: int, duration_s: float
) -> LoadResult:
    """Calls answered OK within the window count as requests, a call that failed is an error.
    At the end each task waits for its open call rather than cancel it: a client going away
    is not what this measures (and a cancelled run can leave the service stuck)."""
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    deadline = start + duration_s

    async def worker() -> None:
        nonlocal errors
        while (began := time.perf_counter()) < deadline:
            try:
                await call()
            except grpc.aio.AioRpcError:
                errors += 1
                continue
            answered = time.perf_counter()
            if answered <= deadline:
                latencies.append(answered - began)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return LoadResult(
        requests=len(latencies), errors=errors, duration_s=duration_s, latencies_s=latencies
    )


def bmi_request(workflow_id: str, inputs: dict[str, float]) -> runner_pb2.RunRequest:
    values = struct_pb2.Struct()
    values.update(inputs)
    return runner_pb2.RunRequest(workflow_id=workflow_id, input=values)


async def check(
    target: str, request: runner_pb2.RunRequest, *, key: str, expected: str
) -> str | None:
    """One call before the load: an answer must be the right one (else the bench measures
    the wrong thing and stops); a failed call is returned, to be reported, as the load's
    failures are."""
    async with grpc.aio.insecure_channel(target) as channel:
        try:
            answer = await runner_pb2_grpc.WorkflowRunnerStub(channel).Run(
                request, metadata=_metadata(key), timeout=30
            )
        except grpc.aio.AioRpcError as error:
            return f"{error.code().name}: {error.details()}"
    if answer.output != expected:
        raise RuntimeError(f"{target} answers {answer.output!r}, not {expected!r}")
    return None


async def run_load(
    target: str,
    request: runner_pb2.RunRequest,
    *,
    key: str,
    concurrency: int,
    duration_s: float,
) -> LoadResult:
    """`WorkflowRunner.Run` on one channel (HTTP/2 multiplexes the concurrent calls)."""
    metadata = _metadata(key)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = runner_pb2_grpc.WorkflowRunnerStub(channel)
        await channel.channel_ready()

        async def call() -> None:
            await stub.Run(request, metadata=metadata, timeout=30)

        return await closed_loop(call, concurrency=concurrency, duration_s=duration_s)


def _metadata(key: str) -> tuple[tuple[str, str], ...]:
    return (("x-api-key", key),)
