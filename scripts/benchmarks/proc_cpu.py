"""CPU time of whole processes (every thread, user + system) read from ``/proc/<pid>/stat``.

Measured from outside, so a process is charged for all it does (its event loop, its driver
threads, the store's storage engine) and the benchmark charges nothing of its own to the server.
Linux only; the kernel counts in clock ticks (10 ms at the usual 100 Hz), so a window should hold
at least a few hundred milliseconds of a process's CPU for its figure to mean much.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` so far, in seconds (fields 14 and 15 of ``/proc/<pid>/stat``)."""
    with open(f"/proc/{pid}/stat") as stat:
        text = stat.read()
    fields = text.rsplit(")", 1)[1].split()  # the command name in parentheses may hold spaces
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND


@dataclass(frozen=True)
class CpuUsage:
    """CPU seconds each process used over a window (None: no such process here) and its wall time."""

    seconds: dict[str, float | None]
    wall_seconds: float

    def share_of_machine(self) -> float:
        """All the measured processes' CPU over the window, as a fraction of every core's time."""
        used = sum(value for value in self.seconds.values() if value is not None)
        return used / (self.wall_seconds * (os.cpu_count() or 1)) if self.wall_seconds else 0.0


class CpuWindow:
    """``open()`` then ``close()``: the CPU each named process used in between.

    A process given as None (an external store, a role the benchmark has no process for) is
    reported as None rather than guessed.
    """

    def __init__(self, processes: Mapping[str, int | None]) -> None:
        self._pids = dict(processes)
        self._opened: dict[str, float] = {}
        self._opened_at = 0.0

    def open(self) -> None:
        self._opened = {name: cpu_seconds(pid) for name, pid in self._pids.items() if pid is not None}
        self._opened_at = time.perf_counter()

    def close(self) -> CpuUsage:
        if not self._opened_at:
            raise RuntimeError("the CPU window was closed before it was opened")
        wall = time.perf_counter() - self._opened_at
        used: dict[str, float | None] = {}
        for name, pid in self._pids.items():
            used[name] = None if pid is None else cpu_seconds(pid) - self._opened[name]
        return CpuUsage(used, wall)


async def wait_quiet(pids: Mapping[str, int | None], busy_below: float = 0.05, timeout: float = 30.0) -> bool:
    """Wait until each process uses less than ``busy_below`` of a core over a quarter second (its
    start-up work done: indexes, the recovery scan), at most ``timeout`` seconds; False if it never did."""
    present = {name: pid for name, pid in pids.items() if pid is not None}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = {name: cpu_seconds(pid) for name, pid in present.items()}
        await asyncio.sleep(0.25)
        if all(cpu_seconds(pid) - before[name] < busy_below * 0.25 for name, pid in present.items()):
            return True
    return False
