"""The stack's processes, found under `flowport serve`, and their peak memory while under load."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

PROC = Path("/proc")
_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def parent_of(pid: int) -> int | None:
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after it.
    return int(stat.rsplit(")", 1)[1].split()[1])


def descendants(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (parent := parent_of(int(entry.name))) is not None:
            parents[int(entry.name)] = parent
    found: list[int] = []
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        children = [child for child, parent in parents.items() if parent == current]
        found += children
        frontier += children
    return found


def command_name(pid: int) -> str:
    try:
        return (PROC / str(pid) / "comm").read_text().strip()
    except OSError:
        return ""


def rss_bytes(pid: int) -> int:
    """VmRSS of a live process; 0 once it is gone."""
    try:
        status = (PROC / str(pid) / "status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def open_files_limit(pid: int) -> int | None:
    """The soft limit of open files of a live process: None if unlimited, 0 once it is gone."""
    try:
        limits = (PROC / str(pid) / "limits").read_text()
    except OSError:
        return 0
    for line in limits.splitlines():
        if line.startswith("Max open files"):
            soft = line.split()[3]
            return None if soft == "unlimited" else int(soft)
    return None


def cpu_seconds(pids: Iterable[int]) -> float:
    """User and system CPU time the processes have used so far, all their threads included
    (those gone count 0)."""
    total = 0
    for pid in pids:
        try:
            stat = (PROC / str(pid) / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat
    return total / _TICKS_PER_S


def serve_processes(serve_pid: int) -> dict[str, list[int]]:
    """`flowport serve` and its workers are the service; its envoy child is Envoy."""
    children = descendants(serve_pid)
    envoy = [pid for pid in children if command_name(pid) == "envoy"]
    service = [serve_pid, *(pid for pid in children if pid not in envoy)]
    return {"service": service, "envoy": envoy}


class PeakRss:
    """Samples the summed VmRSS of each group of processes every `interval_s` in a thread of
    its own (the client's event loop is busy under load); `peak` and `first` by group."""

    def __init__(self, groups: dict[str, list[int]], interval_s: float = 0.1):
        self._groups = groups
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_until_stopped, daemon=True)
        self.first: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.samples = 0

    def _sample(self) -> None:
        for name, pids in self._groups.items():
            rss = sum(rss_bytes(pid) for pid in pids)
            self.first.setdefault(name, rss)
            self.peak[name] = max(self.peak.get(name, 0), rss)
        self.samples += 1

    def _sample_until_stopped(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(self._interval_s):
                break

    def __enter__(self) -> PeakRss:
        self._sample()  # the baseline, before the caller's load begins
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
