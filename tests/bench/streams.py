"""Streamed chat runs against the fake LLM: how fast tokens are relayed, and 10,000 at once.

The client is aiohttp, reading the SSE through the service's own decoder (engine/sse.py,
which has tests of its own; the integration tests read streams through httpx-sse, a library
apart). With httpx and httpx-sse the 1,000 streams cost the bench's client 31.3 s of CPU
against 2.1 s, and took 32.9 s instead of 6.8 s (the same stack, one after the other), so
they measured the client more than the service."""

from __future__ import annotations

import asyncio
import json
import math
import re
import resource
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from flowport.engine.sse import event_batches
from tests.bench.config import BenchConfig
from tests.bench.procs import PeakRss, open_files_limit
from tests.bench.stats import median, percentile

if TYPE_CHECKING:  # the unit tests import this module without the service's packages
    from tests.bench.targets import Flowport
    from tests.fakes.fake_llm_process import FakeLlmProcess

CHAT_INPUT = {"输入": "bench"}
# Each token names its index, so a relayed frame maps back to the fake's write time even if
# the service joins several tokens into one frame.
TOKEN = re.compile(r"t(\d+);")


def numbered_tokens(count: int) -> list[str]:
    return [f"t{i};" for i in range(count)]


@dataclass
class Stream:
    """One streamed run, as the client saw it; `error` is None if it was all right."""

    sent: float  # time.time() when the request went out
    error: str | None = None
    output: str | None = None
    # (time.time() on receipt, Content) of every `stream` frame.
    frames: list[tuple[float, str]] = field(default_factory=list)
    finished: float = 0.0

    @property
    def first_stream_s(self) -> float:
        return self.frames[0][0] - self.sent


async def stream_run(session: aiohttp.ClientSession, flowport: Flowport, expected: str) -> Stream:
    body = {"input": CHAT_INPUT, "stream": True}
    result = Stream(sent=time.time())
    try:
        async with session.post(
            flowport.chat_path, json=body, headers=flowport.headers
        ) as response:
            if response.status != 200:
                result.error = f"HTTP {response.status}: {_message(await response.read())}"
                return result
            # The events of each chunk as it arrives, so a frame's time is when its bytes
            # came in (and were decoded).
            async for events in event_batches(response.content.iter_any()):
                received = time.time()
                for sse in events:
                    if sse.event == "stream":
                        result.frames.append((received, json.loads(sse.data)["Content"]))
                    elif sse.event == "output":
                        result.output = json.loads(sse.data)["output"]
                    elif sse.event == "error":
                        result.error = f"error frame: {json.loads(sse.data).get('message')}"
    except (aiohttp.ClientError, ValueError, KeyError) as error:
        # Counted, not raised: one broken stream among a thousand is a figure, not a crash.
        result.error = f"{type(error).__name__}: {error}"
    result.finished = time.time()
    if result.error is None:
        streamed = "".join(content for _, content in result.frames)
        if result.output != expected or streamed != expected:
            result.error = "wrong output"
    return result


def _message(body: bytes) -> str:
    """An error answer's message, which names the kind of error (the bench counts errors by
    it); the whole body, cut short, when it is not the documented JSON."""
    try:
        message = json.loads(body)["message"]
    except (ValueError, KeyError, TypeError):
        message = body.decode(errors="replace")
    return str(message)[:120]


# -- relay -----------------------------------------------------------------------------


@dataclass
class RelayResult:
    tokens_per_stream: int
    token_gap_s: float = 0.0  # the fake's pause between tokens; 0: all written at once
    streams: int = 0
    first_stream_s: list[float] = field(default_factory=list)  # one per good stream
    token_latency_s: list[float] = field(default_factory=list)  # one per token of those
    errors: Counter[str] = field(default_factory=Counter)
    # Per good stream: how long the fake took to write all tokens, and how long the client
    # took to receive them, first to last; the gap is the service's cost per token.
    write_span_s: list[float] = field(default_factory=list)
    receive_span_s: list[float] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "tokens_per_stream": self.tokens_per_stream,
            "token_gap_ms": self.token_gap_s * 1e3,
            "streams": self.streams,
            "errors": dict(self.errors),
            "first_stream_ms": _ms_summary(self.first_stream_s),
            "added_latency_per_token_ms": _ms_summary(self.token_latency_s),
            "fake_write_span_ms": median(self.write_span_s) * 1e3,
            "client_receive_span_ms": median(self.receive_span_s) * 1e3,
        }


def token_latencies(stream: Stream, written: list[float]) -> list[float]:
    """For every token, when the client got it minus when the fake wrote it (time.time() on
    the same machine); raises unless each of the fake's tokens arrived exactly once."""
    latencies: dict[int, float] = {}
    for received, content in stream.frames:
        for match in TOKEN.finditer(content):
            index = int(match[1])
            if index in latencies:
                raise RuntimeError(f"token {index} arrived twice")
            latencies[index] = received - written[index]
    if sorted(latencies) != list(range(len(written))):
        raise RuntimeError(f"{len(latencies)} of {len(written)} tokens arrived")
    return [latencies[i] for i in range(len(written))]


async def relay(
    config: BenchConfig, flowport: Flowport, fake: FakeLlmProcess, *, token_gap_s: float = 0.0
) -> RelayResult:
    """Streams run one after another, so each has the service to itself. With `token_gap_s`
    0 the fake writes all tokens at once (a burst: the service's throughput per token);
    otherwise that far apart (a model's pace: each token's own trip)."""
    tokens = numbered_tokens(config.relay_tokens)
    expected = "".join(tokens)
    result = RelayResult(config.relay_tokens, token_gap_s)
    handed_over: list[float] = []

    async def mark(*_: object) -> None:
        handed_over.append(time.time())

    # The request's time is when the client starts sending it (the connection is already
    # open, kept alive from the warm-up): building it is the client's own cost.
    tracing = aiohttp.TraceConfig()
    tracing.on_request_start.append(mark)
    async with aiohttp.ClientSession(
        base_url=flowport.base_url,
        timeout=aiohttp.ClientTimeout(total=60),
        trace_configs=[tracing],
    ) as session:
        for index in range(1 + config.runs * config.relay_streams):
            fake.reset()
            fake.set_reply(tokens, delay_s=token_gap_s)
            stream = await stream_run(session, flowport, expected)
            stream.sent = handed_over[-1]
            if index == 0:
                continue  # warm-up: the first stream opens the service's LLM connection
            result.streams += 1
            if stream.error is not None:
                result.errors[stream.error] += 1
                continue
            written = fake.token_times
            result.first_stream_s.append(stream.first_stream_s)
            result.token_latency_s += token_latencies(stream, written)
            result.write_span_s.append(written[-1] - written[0])
            result.receive_span_s.append(stream.frames[-1][0] - stream.frames[0][0])
    fake.reset()
    return result


# -- concurrent streams ----------------------------------------------------------------


@dataclass
class ConcurrentRun:
    streams: int
    wall_s: float
    errors: Counter[str]
    durations_s: list[float]  # request to last byte, streams that succeeded
    first_stream_s: list[float]
    rss_before: dict[str, int]
    rss_peak: dict[str, int]

    @property
    def ok(self) -> int:
        return self.streams - sum(self.errors.values())


@dataclass
class ConcurrentResult:
    streams: int
    tokens: int
    token_gap_s: float
    runs: list[ConcurrentRun] = field(default_factory=list)
    budget_cut: bool = False  # fewer runs than asked: the step's time budget was used up
    # Open-files limits by process group ("client", "service", "envoy"); None: unlimited.
    fd_limits: dict[str, int | None] = field(default_factory=dict)

    @property
    def errors(self) -> Counter[str]:
        return sum((run.errors for run in self.runs), Counter())

    @property
    def wall_s(self) -> float:
        return median([run.wall_s for run in self.runs])

    def peak_rss(self, group: str) -> float:
        return median([run.rss_peak.get(group, 0) for run in self.runs])

    def rss_before(self, group: str) -> float:
        return median([run.rss_before.get(group, 0) for run in self.runs])

    def kib_per_stream(self, group: str) -> float:
        """What one stream holds at the peak: (peak - idle) / streams."""
        return (self.peak_rss(group) - self.rss_before(group)) / self.streams / 1024

    def duration_s(self, q: float) -> float:
        return median([percentile(run.durations_s, q) for run in self.runs if run.durations_s])

    def first_stream_s(self, q: float) -> float:
        return median([percentile(r.first_stream_s, q) for r in self.runs if r.first_stream_s])

    def as_json(self) -> dict[str, Any]:
        return {
            "streams": self.streams,
            "tokens": self.tokens,
            "token_gap_ms": self.token_gap_s * 1e3,
            "ok": sum(run.ok for run in self.runs),
            "attempted": self.streams * len(self.runs),
            "runs_done": len(self.runs),
            "budget_cut": self.budget_cut,
            "errors": dict(self.errors),
            "wall_s": self.wall_s,
            "stream_duration_ms": {
                "p50": self.duration_s(50) * 1e3,
                "p99": self.duration_s(99) * 1e3,
            },
            "first_stream_ms": {
                "p50": self.first_stream_s(50) * 1e3,
                "p99": self.first_stream_s(99) * 1e3,
            },
            "peak_rss_mib": {g: self.peak_rss(g) / 2**20 for g in ("service", "envoy")},
            "rss_before_mib": {g: self.rss_before(g) / 2**20 for g in ("service", "envoy")},
            "kib_per_stream": {g: self.kib_per_stream(g) for g in ("service", "envoy")},
            "fd_limits": self.fd_limits,
            "runs": [
                {
                    "wall_s": run.wall_s,
                    "ok": run.ok,
                    "errors": dict(run.errors),
                    "peak_rss_mib": {g: v / 2**20 for g, v in run.rss_peak.items()},
                }
                for run in self.runs
            ],
        }


# Open files besides one socket per stream: the stack's own (logs, the database, the service's
# connections to the fake LLM, up to 1,000).
FD_MARGIN = 2048


def raise_fd_limit(streams: int) -> int:
    """Every stream is a socket of the client's and one of Envoy's: the soft limit of open
    files goes up to what `streams` need, and no further than the hard limit allows. Called
    before the bench starts the stack, whose processes inherit it. Returns the soft limit."""
    needed = streams + FD_MARGIN
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise RuntimeError(f"{needed} open files needed, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        soft = needed
    return soft


def fd_limits(groups: dict[str, list[int]]) -> dict[str, int | None]:
    """The open-files limit of the client (this process) and the lowest of each group's
    processes, as the report shows them (None: unlimited)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    limits: dict[str, int | None] = {"client": None if soft == resource.RLIM_INFINITY else soft}
    for group, pids in groups.items():
        known = [limit for limit in map(open_files_limit, pids) if limit is not None]
        limits[group] = min(known) if known else None
    return limits


async def concurrent(
    config: BenchConfig, flowport: Flowport, fake: FakeLlmProcess
) -> ConcurrentResult:
    """`config.concurrent_streams` streamed runs started at once against a slow model."""
    count = config.concurrent_streams
    tokens = numbered_tokens(config.concurrent_tokens)
    expected = "".join(tokens)
    raise_fd_limit(count)  # the bench raised it before the stack started; a no-op then
    result = ConcurrentResult(count, len(tokens), config.concurrent_token_gap_s)
    result.fd_limits = fd_limits(flowport.processes())
    fake.reset()
    fake.set_reply(tokens, delay_s=config.concurrent_token_gap_s)
    timeout = aiohttp.ClientTimeout(total=config.stream_deadline_s)
    step_started = time.perf_counter()
    for _ in range(config.runs):
        spent = time.perf_counter() - step_started
        if result.runs and spent + result.runs[-1].wall_s > config.concurrent_budget_s:
            result.budget_cut = True
            break
        # A fresh client each run: every stream opens its own connection, as 10,000 users would.
        # Each stream holds its connection to its end: the pool must hold them all at once.
        connector = aiohttp.TCPConnector(limit=count)
        async with aiohttp.ClientSession(
            base_url=flowport.base_url, connector=connector, timeout=timeout
        ) as session:
            with PeakRss(flowport.processes()) as rss:
                started = time.perf_counter()
                streams = await asyncio.gather(
                    *(
                        _with_deadline(stream_run(session, flowport, expected), config)
                        for _ in range(count)
                    )
                )
                wall = time.perf_counter() - started
        good = [s for s in streams if s.error is None]
        result.runs.append(
            ConcurrentRun(
                streams=count,
                wall_s=wall,
                errors=Counter(s.error for s in streams if s.error is not None),
                durations_s=[s.finished - s.sent for s in good],
                first_stream_s=[s.first_stream_s for s in good],
                rss_before=dict(rss.first),
                rss_peak=dict(rss.peak),
            )
        )
    fake.reset()
    return result


async def _with_deadline(run: Coroutine[Any, Any, Stream], config: BenchConfig) -> Stream:
    sent = time.time()
    try:
        return await asyncio.wait_for(run, config.stream_deadline_s)
    except TimeoutError:
        return Stream(sent=sent, error=f"not done within {config.stream_deadline_s:.0f} s")


def _ms_summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": math.nan, "p99": math.nan}
    return {"p50": percentile(values, 50) * 1e3, "p99": percentile(values, 99) * 1e3}
