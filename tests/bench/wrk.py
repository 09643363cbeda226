"""wrk as the HTTP load generator: a Lua script for the POST, and a parser for its report."""

from __future__ import annotations

import asyncio
import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

_UNITS_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^\s*([\d.]+)(us|ms|s|m|h)\s*$")
_PERCENTILE = re.compile(r"^\s*(\d+(?:\.\d+)?)%\s+(\S+)\s*$")
_TOTAL = re.compile(r"^\s*(\d+) requests in (\S+), .* read\s*$")
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)\s*$")
_SOCKET_ERRORS = re.compile(
    r"^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)\s*$"
)
_NON_2XX = re.compile(r"^\s*Non-2xx or 3xx responses: (\d+)\s*$")


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    requests_per_s: float
    # From --latency's "Latency Distribution": percentile (50, 75, 90, 99) -> seconds.
    latency_s: dict[float, float] = field(default_factory=dict)
    socket_errors: int = 0
    non_2xx: int = 0

    @property
    def errors(self) -> int:
        return self.socket_errors + self.non_2xx

    @property
    def p50_s(self) -> float:
        return self.latency_s[50.0]

    @property
    def p99_s(self) -> float:
        return self.latency_s[99.0]


def parse_duration(text: str) -> float:
    """wrk's durations ("812.00us", "6.45ms", "1.02s", "1.50m") in seconds."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match[1]) * _UNITS_S[match[2]]


def parse_output(text: str) -> WrkResult:
    """The figures of `wrk --latency`'s report; raises ValueError if one is missing."""
    latency: dict[float, float] = {}
    requests = duration = rps = None
    socket_errors = non_2xx = 0
    in_distribution = False
    for line in text.splitlines():
        if line.strip() == "Latency Distribution":
            in_distribution = True
            continue
        if in_distribution:
            match = _PERCENTILE.match(line)
            if match:
                latency[float(match[1])] = parse_duration(match[2])
                continue
            in_distribution = False
        if match := _TOTAL.match(line):
            requests, duration = int(match[1]), parse_duration(match[2])
        elif match := _RPS.match(line):
            rps = float(match[1])
        elif match := _SOCKET_ERRORS.match(line):
            socket_errors = sum(int(n) for n in match.groups())
        elif match := _NON_2XX.match(line):
            non_2xx = int(match[1])
    if requests is None or duration is None or rps is None:
        raise ValueError(f"no totals in wrk's output:\n{text}")
    if 50.0 not in latency or 99.0 not in latency:
        raise ValueError(f"no latency distribution in wrk's output (--latency?):\n{text}")
    if requests == 0:
        # wrk prints 0.00us for every percentile then: no request finished, no latency known.
        latency = dict.fromkeys(latency, math.nan)
    return WrkResult(
        requests=requests,
        duration_s=duration,
        requests_per_s=rps,
        latency_s=latency,
        socket_errors=socket_errors,
        non_2xx=non_2xx,
    )


def lua_string(text: str) -> str:
    """A Lua string literal; wrk's LuaJIT knows no \\u escapes, so only ASCII is allowed."""
    if not text.isascii() or any(c in text for c in "\r\n"):
        raise ValueError(f"not a one-line ASCII string: {text!r}")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def post_script(body: str, headers: dict[str, str]) -> str:
    """A wrk script that sends every request as this POST."""
    lines = ['wrk.method = "POST"', f"wrk.body = {lua_string(body)}"]
    lines += [f"wrk.headers[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items()]
    return "\n".join(lines) + "\n"


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk is not installed: `make bench` installs it (Debian package wrk)")
    return path


async def run(
    url: str, *, script: Path, connections: int, duration_s: float, threads: int = 1
) -> WrkResult:
    """One wrk measurement. One thread by default: wrk shares two cores with the stack."""
    process = await asyncio.create_subprocess_exec(
        wrk_path(),
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={duration_s:g}s",
        "--timeout=10s",
        "--latency",
        f"--script={script}",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    text = out.decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"wrk exited with {process.returncode}:\n{text}")
    return parse_output(text)
