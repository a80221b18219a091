"""P4: many no-reply timers due within the same second: all must fire, with a small p99 lateness.

Lateness of a timer = when the compare-and-set write of its turn returned (wall clock, taken by
wrapping ``ContactRepository.compare_and_set``) minus when it was due. The turn's own clock
(``steps[].at``) is taken before the turn's store round trips and would flatter the figure.
Contacts are cloned from one real waiting contact and armed by recovery, as after a restart.
The cost per fired timer (``costs.py``) is measured from when they fall due until every job is acked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from scripts.benchmarks import harness
from scripts.benchmarks.costs import CostWindow, EventCosts, StoreWork
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
TARGETS = {"server": 0.7, "store": 1.2}  # CPU ms per fired timer (issue 19)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure(services: harness.Services, count: int, quick: bool) -> Row:
    settings = services.settings.model_copy(update={"recovery_interval_seconds": 3600.0, "store_stats": True})
    runtime = Runtime(settings)
    stats = runtime.database.stats
    assert stats is not None
    # The runtime runs in this process: it is the server whose CPU is measured.
    processes = {"server": os.getpid(), "store": services.store_pid, "redis": services.redis_pid}
    window = CostWindow(processes, lambda: StoreWork.of(stats))
    committed_at: dict[str, datetime] = {}  # clone contact id -> when its last write returned
    all_committed = asyncio.Event()
    template_id = ""  # the contact the clones are copied from: set once it exists
    compare_and_set = runtime.contacts.compare_and_set

    async def timed_compare_and_set(document: dict[str, Any], expected_version: int) -> bool:
        written = await compare_and_set(document, expected_version)
        if written and document["_id"] != template_id:
            committed_at[document["_id"]] = datetime.now(UTC)
            if len(committed_at) >= count:
                all_committed.set()
        return written

    runtime.contacts.compare_and_set = timed_compare_and_set  # type: ignore[method-assign]
    await runtime.start()
    try:
        await harness.workspace(runtime)
        _, template = await harness.waiting_template(runtime, FLOW)
        template_id = template["_id"]
        due = runtime.clock.now() + timedelta(seconds=4 if quick else 30)
        await harness.insert_clones(runtime, template, count, due)
        armed_at = time.perf_counter()
        await runtime.recover_now()  # arms every timer in arq, as a restart would
        arm_seconds = time.perf_counter() - armed_at
        contacts = runtime.database.collection("contacts")
        # The window opens when the timers fall due (arming them is setup, as a restart's is).
        late_open = (runtime.clock.now() - due).total_seconds()
        await asyncio.sleep(max(0.0, -late_open))
        window.open()
        # Wait on the commits seen in-process: polling the store with count queries would take
        # a good share of its capacity from the turns being measured. The store is read once after.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_committed.wait(), 600)
        worker = runtime.timer_worker
        # Jobs still queued once every run moved on (acks trail the commits a little); the
        # template contact's own timer (due in an hour) stays.
        for _ in range(100):
            if await runtime.redis.zcard(runtime.prefix + "timers") <= 1:
                break
            await asyncio.sleep(0.1)
        usage, work = window.close()
        left = await runtime.redis.zcard(runtime.prefix + "timers") - 1
        lateness: list[float] = []
        async for doc in contacts.find({"_id": {"$ne": template["_id"]}}, {"runs.steps": 1}):
            if any(step["action"] == "no_reply" for step in doc["runs"][-1]["steps"]):
                lateness.append((committed_at[doc["_id"]] - due).total_seconds())
        counts = (
            f"worker fired {worker.fired:,}, retried {worker.retried:,}, dropped {worker.dropped:,}; "
            if worker is not None
            else ""
        )
    finally:
        await runtime.stop()
    fired = len(lateness)
    p50, p99 = (percentile(lateness, 0.5), percentile(lateness, 0.99)) if lateness else (float("nan"),) * 2
    passed = fired == count and p99 <= P99_TARGET_SECONDS
    return Row(
        key="P4",
        what=f"{count:,} no-reply timers due in the same second",
        measured=f"{fired:,} fired; p99 late {p99:.2f} s (p50 {p50:.2f} s)",
        reference="due time",
        target=f"all fired; p99 <= {P99_TARGET_SECONDS:.0f} s",
        passed=None if quick else passed,
        notes=(
            f"arming {count:,} timers in arq took {arm_seconds:.1f} s; {counts}{left} jobs left queued; "
            f"{fired / max(1e-9, max(lateness, default=0.0)):.0f} timer turns/s; "
            f"machine load (1 min) {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        ),
        costs=[
            EventCosts(
                "P4",
                fired,
                "fired timer",
                usage,
                work,
                TARGETS,
                quick=quick,
                note="server = the bench process (the runtime runs in it)"
                + (f"; window opened {late_open:.1f} s after the timers fell due" if late_open > 0 else ""),
            )
        ],
    )
