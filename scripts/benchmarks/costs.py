"""The cost of one event, as issue 19's targets are checked: each process's CPU milliseconds per event
over the measured window (``proc_cpu``), and the store work the server asked for per event
(documents written, commands sent), counted by the driver's command monitoring in the server
process (``server/store/stats.py``; read from ``/metrics`` when the server is a process of its own).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from scripts.benchmarks.proc_cpu import CpuUsage, CpuWindow
from server.store.stats import StoreStats

# The processes a row may measure, in the table's column order, with their column titles.
PROCESSES = {
    "server": "server",
    "store": "store",
    "redis": "Redis",
    "loadgen": "load gen",
    "fake": "Graph fake",
    "bench": "bench",
}
COMMANDS_METRIC = "konvo_store_commands_total"
DOCUMENTS_METRIC = "konvo_store_documents_written_total"
BY_COLLECTION_METRIC = "konvo_store_documents_written_by_collection_total"


@dataclass(frozen=True)
class StoreWork:
    """Commands sent (by name) and documents written, since start or over a window (a difference)."""

    commands: Counter[str]
    documents_written: int
    by_collection: Counter[str] = field(default_factory=Counter)

    @property
    def total_commands(self) -> int:
        return sum(self.commands.values())

    @classmethod
    def of(cls, stats: StoreStats) -> StoreWork:
        """A snapshot of a listener of this process."""
        return cls(Counter(stats.commands), stats.documents_written, Counter(stats.written_by_collection))

    @classmethod
    def from_metrics(cls, series: Mapping[str, float]) -> StoreWork:
        """A snapshot from a served process's ``/metrics`` (``KONVO_STORE_STATS=1``)."""
        if DOCUMENTS_METRIC not in series:
            raise RuntimeError(f"/metrics has no {DOCUMENTS_METRIC}: is KONVO_STORE_STATS set on the server?")
        commands = _labelled(series, COMMANDS_METRIC, "command")
        return cls(
            commands, int(series[DOCUMENTS_METRIC]), _labelled(series, BY_COLLECTION_METRIC, "collection")
        )

    def __sub__(self, earlier: StoreWork) -> StoreWork:
        return StoreWork(
            self.commands - earlier.commands,
            self.documents_written - earlier.documents_written,
            self.by_collection - earlier.by_collection,
        )


def _labelled(series: Mapping[str, float], metric: str, label: str) -> Counter[str]:
    """The samples of a labelled counter, by label value."""
    prefix = f'{metric}{{{label}="'
    return Counter(
        {name[len(prefix) : -2]: int(value) for name, value in series.items() if name.startswith(prefix)}
    )


class CostWindow:
    """The measured window of a row: the CPU of its processes and the server's store work in it."""

    def __init__(
        self, processes: Mapping[str, int | None], store_work: Callable[[], StoreWork] | None
    ) -> None:
        self._cpu = CpuWindow(processes)
        self._store_work = store_work
        self._work_before: StoreWork | None = None

    def open(self) -> None:
        self._work_before = self._store_work() if self._store_work is not None else None
        self._cpu.open()

    def close(self) -> tuple[CpuUsage, StoreWork | None]:
        usage = self._cpu.close()
        if self._store_work is None or self._work_before is None:
            return usage, None
        return usage, self._store_work() - self._work_before


@dataclass
class EventCosts:
    """What ``events`` events cost each process over one measured window, and the targets per event.

    ``targets``: process -> most CPU milliseconds per event; ``checks``: the row's other conditions
    (a rate, exactly-once delivery), by what they say.
    """

    key: str
    events: int
    unit: str
    usage: CpuUsage
    store: StoreWork | None
    targets: dict[str, float] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)
    quick: bool = False
    note: str = ""

    def ms(self, process: str) -> float | None:
        seconds = self.usage.seconds.get(process)
        return None if seconds is None or not self.events else 1000 * seconds / self.events

    @property
    def passed(self) -> bool | None:
        """No verdict in quick mode, nor for a row without CPU targets (its checks are in the notes)."""
        if self.quick or not self.targets:
            return None
        within = all((self.ms(p) is not None and self.ms(p) <= most) for p, most in self.targets.items())
        return within and all(self.checks.values())

    def cells(self) -> list[str]:
        cells = [self.key, f"{self.events:,} {self.unit}s"]
        for process in PROCESSES:
            value = self.ms(process)
            text = "-" if value is None else f"{value:.2f}"
            if process in self.targets:
                text += f" (<= {self.targets[process]:g})"
            cells.append(text)
        store = self.store
        cells.append("-" if store is None else f"{store.documents_written / self.events:.2f}")
        cells.append("-" if store is None else f"{store.total_commands / self.events:.2f}")
        cells.append({True: "PASS", False: "FAIL", None: "-"}[self.passed])
        return cells

    def notes(self) -> str:
        usage = self.usage
        parts = [f"{usage.share_of_machine():.0%} of {os.cpu_count()} cores over {usage.wall_seconds:.1f} s"]
        if self.store is not None and self.events:
            commands = self.store.commands.most_common()
            per = ", ".join(f"{name} {count / self.events:.2f}" for name, count in commands if count)
            parts.append(f"commands per {self.unit}: {per or 'none'}")
            written = self.store.by_collection.most_common()
            per = ", ".join(f"{name} {count / self.events:.2f}" for name, count in written if count)
            parts.append(f"documents written per {self.unit}: {per or 'none'}")
        parts += [f"{what}: {'yes' if ok else 'NO'}" for what, ok in self.checks.items()]
        if self.note:
            parts.append(self.note)
        return "; ".join(parts)


def print_costs(rows: list[EventCosts]) -> None:
    if not rows:
        return
    print()
    print(
        "Cost per event: CPU ms of each process (/proc/<pid>/stat, user + system, over the measured "
        "window) and the server's store work (command monitoring); targets of issue 19 in parentheses"
    )
    headers = ["#", "events", *(f"{title} ms" for title in PROCESSES.values()), "docs written", "store cmds"]
    headers.append("result")
    cells = [row.cells() for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    print(" | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for cell in cells:
        print(" | ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)))
    for row in rows:
        print(f"  {row.key}: {row.notes()}")
