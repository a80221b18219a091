"""P4: no-reply timers firing, in two phases on the same runtime.

1. **Burst**: ``count`` timers due in the same second. All must fire; the *sustained firing rate*
   is the rate their turns committed at (first to last commit, the pipeline's fill left out),
   and the cost per fired timer (``costs.py``, the targets of issue 19) is measured from when they
   fall due until every job is acked.
2. **Paced at 80%**: another ``count`` timers, due one after the other at 80% of that rate. Their
   p99 lateness must stay within a second: the worker keeps up with a load it can sustain, rather
   than only draining a backlog. Its cost is printed too (it includes the idle polling between
   timers).

Lateness of a timer = when the compare-and-set write of its turn returned (wall clock, taken by
wrapping ``ContactRepository.compare_and_set``) minus when it was due. The turn's own clock
(``steps[].at``) is taken before the turn's store round trips and would flatter the figure.
Contacts are cloned from one real waiting contact and armed by recovery, as after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from scripts.benchmarks import harness
from scripts.benchmarks.costs import CostWindow, EventCosts, StoreWork
from scripts.benchmarks.proc_cpu import CpuUsage
from scripts.benchmarks.report import Row
from server.runtime import Runtime

FLOW = {
    "name": "Still there?",
    "start": "ask",
    "nodes": [
        {"id": "ask", "type": "message", "text": "¿Sigues ahí?", "no_reply": {"after": "1h", "next": None}},
    ],
}
P99_TARGET_SECONDS = 1.0
PACED_SHARE = 0.8  # of the sustained firing rate
TARGETS = {"server": 0.7, "store": 1.2}  # CPU ms per fired timer (issue 19)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class _Commits:
    """When each watched contact's first write after its timer fell due returned."""

    def __init__(self) -> None:
        self.at: dict[str, datetime] = {}
        self._waiting: set[str] = set()
        self._all = asyncio.Event()

    def watch(self, ids: list[str]) -> None:
        self._waiting = set(ids)
        self._all.clear()

    def seen(self, contact_id: str) -> None:
        if contact_id in self._waiting:
            self.at[contact_id] = datetime.now(UTC)
            self._waiting.discard(contact_id)
            if not self._waiting:
                self._all.set()

    async def wait_all(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all.wait(), timeout)


@dataclass
class _Phase:
    """One phase's timers (contact id -> due time), measured window and what it cost."""

    due: dict[str, datetime]
    usage_work: tuple[CpuUsage, StoreWork | None] | None = None

    def lateness(self, commits: _Commits, fired: set[str]) -> list[float]:
        """Seconds from due to commit of each timer that fired."""
        return [(commits.at[i] - due).total_seconds() for i, due in self.due.items() if i in fired]


async def _run_phase(
    runtime: Runtime, window: Callable[[], CostWindow], commits: _Commits, phase: _Phase, timeout: float
) -> None:
    """Arm the phase's timers (setup), then measure from the first due time until all are acked."""
    commits.watch(list(phase.due))
    await runtime.recover_now()  # arms every timer in arq, as a restart would
    first_due = min(phase.due.values())
    await asyncio.sleep(max(0.0, (first_due - runtime.clock.now()).total_seconds()))
    measured = window()
    measured.open()
    # Wait on the commits seen in-process: polling the store with count queries would take a
    # good share of its capacity from the turns being measured. The store is read once after.
    await commits.wait_all(timeout)
    # Jobs still queued once every run moved on (acks trail the commits a little); the
    # template contact's own timer (due in an hour) stays.
    for _ in range(100):
        if await _queued(runtime) <= 1:
            break
        await asyncio.sleep(0.1)
    phase.usage_work = measured.close()


async def _queued(runtime: Runtime) -> int:
    """Timer jobs in the queue (due, or claimed and not acked yet)."""
    return int(await runtime.arq.zcard(runtime.timers.queue_name))


async def _fired(runtime: Runtime, ids: list[str]) -> set[str]:
    """The contacts whose last run has its no-reply step: their timer fired."""
    fired: set[str] = set()
    contacts = runtime.database.collection("contacts")
    async for doc in contacts.find({"_id": {"$in": ids}}, {"runs.steps": 1}):
        if any(step["action"] == "no_reply" for step in doc["runs"][-1]["steps"]):
            fired.add(doc["_id"])
    return fired


async def measure(services: harness.Services, count: int, quick: bool) -> Row:
    settings = services.settings.model_copy(update={"recovery_interval_seconds": 3600.0, "store_stats": True})
    runtime = Runtime(settings)
    stats = runtime.database.stats
    assert stats is not None
    # The runtime runs in this process: it is the server whose CPU is measured.
    processes = {"server": os.getpid(), "store": services.store_pid, "redis": services.redis_pid}

    def window() -> CostWindow:
        return CostWindow(processes, lambda: StoreWork.of(stats))

    commits = _Commits()
    compare_and_set = runtime.contacts.compare_and_set

    async def timed_compare_and_set(document: dict[str, Any], expected_version: int) -> bool:
        written = await compare_and_set(document, expected_version)
        if written:
            commits.seen(document["_id"])
        return written

    runtime.contacts.compare_and_set = timed_compare_and_set  # type: ignore[method-assign]
    await runtime.start()
    try:
        await harness.workspace(runtime)
        _, template = await harness.waiting_template(runtime, FLOW)
        lead = timedelta(seconds=4 if quick else 30)  # arming comes first
        due = runtime.clock.now() + lead
        burst_ids = await harness.insert_clones(runtime, template, count, due)
        burst = _Phase({i: due for i in burst_ids})
        armed_at = time.perf_counter()
        await _run_phase(runtime, window, commits, burst, 600)
        burst_seconds = time.perf_counter() - armed_at
        times = sorted(commits.at[i] for i in burst_ids if i in commits.at)
        span = (times[-1] - times[0]).total_seconds() if len(times) > 1 else 0.0
        rate = (len(times) - 1) / span if span > 0 else float("nan")
        worker = runtime.timer_worker
        counts = (
            f"worker fired {worker.fired:,}, retried {worker.retried:,}, dropped {worker.dropped:,}"
            if worker is not None
            else "no timer worker"
        )
        paced_rate = PACED_SHARE * rate if rate == rate else 10.0
        spacing = timedelta(seconds=1 / paced_rate)
        paced_due = runtime.clock.now() + lead + timedelta(seconds=burst_seconds / 2)
        paced_ids = await harness.insert_clones(
            runtime, template, count, paced_due, first_index=count + 1, spacing=spacing
        )
        paced = _Phase({i: paced_due + k * spacing for k, i in enumerate(paced_ids)})
        await _run_phase(runtime, window, commits, paced, 600 + count / paced_rate)
        fired_burst = await _fired(runtime, burst_ids)
        fired_paced = await _fired(runtime, paced_ids)
        left = await _queued(runtime) - 1
    finally:
        await runtime.stop()
    fired_burst &= set(commits.at)
    fired_paced &= set(commits.at)
    burst_late = burst.lateness(commits, fired_burst)
    paced_late = paced.lateness(commits, fired_paced)
    p99 = percentile(paced_late, 0.99) if paced_late else float("nan")
    p50 = percentile(paced_late, 0.5) if paced_late else float("nan")
    burst_p99 = percentile(burst_late, 0.99) if burst_late else float("nan")
    all_fired = len(fired_burst) == count and len(fired_paced) == count
    passed = all_fired and p99 <= P99_TARGET_SECONDS
    assert burst.usage_work is not None and paced.usage_work is not None
    return Row(
        key="P4",
        what=f"{count:,} no-reply timers due at once, then {count:,} paced at {PACED_SHARE:.0%} of that rate",
        measured=(
            f"{len(fired_burst):,} + {len(fired_paced):,} fired; sustained {rate:,.0f} timers/s; "
            f"at {paced_rate:,.0f}/s p99 late {p99:.2f} s (p50 {p50:.2f} s)"
        ),
        reference="due time",
        target=f"all fired; p99 <= {P99_TARGET_SECONDS:.0f} s at {PACED_SHARE:.0%}",
        passed=None if quick else passed,
        notes=(
            f"{counts}; {left} jobs left queued; the burst's p99 lateness {burst_p99:.1f} s "
            f"(a backlog of {count:,} drained at the sustained rate); "
            f"machine load (1 min) {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        ),
        costs=[
            EventCosts(
                "P4",
                len(fired_burst),
                "fired timer",
                *burst.usage_work,
                TARGETS,
                quick=quick,
                note="burst (the sustained rate); server = the bench process (the runtime runs in it)",
            ),
            EventCosts(
                "P4 80%",
                len(fired_paced),
                "fired timer",
                *paced.usage_work,
                quick=quick,
                note=f"paced at {paced_rate:,.0f} timers/s; idle polling between timers included",
            ),
        ],
    )
