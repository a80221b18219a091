"""P4: many no-reply timers due within the same second: all must fire, with a small p99 lateness.

Lateness of a timer = when its turn was committed (the run's ``no_reply`` step) minus when it was
due. Contacts are cloned from one real waiting contact and armed by recovery, as after a restart.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from scripts.benchmarks import harness
from scripts.benchmarks.report import Row
from server.config import Settings
from server.operations import contacts as contact_ops
from server.runtime import Runtime

FLOW = {
    "name": "Still there?",
    "start": "ask",
    "nodes": [
        {"id": "ask", "type": "message", "text": "¿Sigues ahí?", "no_reply": {"after": "1h", "next": None}},
    ],
}
P99_TARGET_SECONDS = 1.0


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure(settings: Settings, count: int, quick: bool) -> Row:
    runtime = Runtime(settings.model_copy(update={"recovery_interval_seconds": 3600.0}))
    await runtime.start()
    try:
        await harness.workspace(runtime)
        flow_id = await harness.publish(runtime, FLOW)
        await contact_ops.customer_says(runtime, harness.WORKSPACE, harness.phone(0), "hola", None)
        await contact_ops.start_flow(runtime, harness.WORKSPACE, flow_id, harness.phone(0), None)
        template = await runtime.contacts.get(harness.WORKSPACE, f"{harness.WORKSPACE}:{harness.phone(0)}")
        assert template is not None
        due = runtime.clock.now() + timedelta(seconds=4 if quick else 30)
        await harness.insert_clones(runtime, template, count, due)
        armed_at = time.perf_counter()
        await runtime.recover_now()  # arms every timer in arq, as a restart would
        arm_seconds = time.perf_counter() - armed_at
        contacts = runtime.database.collection("contacts")
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            clones_waiting = {"_id": {"$ne": template["_id"]}, "runs.status": "waiting"}
            waiting = await contacts.count_documents(clones_waiting)
            if waiting == 0:
                break
            await asyncio.sleep(0.5)
        lateness: list[float] = []
        async for doc in contacts.find({"_id": {"$ne": template["_id"]}}, {"runs.steps": 1}):
            for step in doc["runs"][-1]["steps"]:
                if step["action"] == "no_reply":
                    lateness.append((step["at"] - due).total_seconds())
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
        notes=f"arming {count:,} timers in arq took {arm_seconds:.1f} s",
    )
