"""P5: memory of many contacts touched once: resident growth once actors are passivated, and the
cost of each actor while active.

RSS rarely shrinks when Python frees objects, so the per-actor cost is measured with tracemalloc on
a sample of fresh contacts: memory traced with their actors live minus after passivating them.
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc

from scripts.benchmarks import harness
from scripts.benchmarks.report import Row
from server.actors.events import InboundMessage
from server.config import Settings
from server.ids import ContactKey, new_id
from server.runtime import Runtime

GROWTH_TARGET_MB = 300
PER_ACTOR_TARGET_KB = 4
BATCH = 400
SAMPLE = 2_000


async def touch(runtime: Runtime, first: int, count: int) -> None:
    assert runtime.actors is not None
    for start in range(first, first + count, BATCH):
        futures = [
            runtime.actors.tell(
                ContactKey(harness.WORKSPACE, harness.phone(i)),
                InboundMessage(new_id("in"), runtime.clock.now(), text="hola"),
            )
            for i in range(start, min(start + BATCH, first + count))
        ]
        await asyncio.gather(*futures)


async def traced_actor_cost(runtime: Runtime, sample: int) -> float:
    """KB held per live actor, from tracemalloc over ``sample`` contacts touched for the first time."""
    tracemalloc.start()
    try:
        await touch(runtime, 20_000_000, sample)
        gc.collect()
        live, _ = tracemalloc.get_traced_memory()
        runtime.actors.passivate_idle(time.monotonic())  # type: ignore[union-attr]
        await asyncio.sleep(0.2)  # let the cancelled actor tasks finish, so their objects can go
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return max(0, live - after) / sample / 1024


async def measure(settings: Settings, count: int, quick: bool) -> Row:
    runtime = Runtime(settings.model_copy(update={"actor_idle_seconds": 3600.0}))
    await runtime.start()
    try:
        await harness.workspace(runtime)
        await touch(runtime, 10_000_000, 200)  # warm caches and connection pools
        runtime.actors.passivate_idle(time.monotonic())  # type: ignore[union-attr]
        gc.collect()
        baseline = harness.rss_bytes()
        started = time.perf_counter()
        await touch(runtime, 1, count)
        touched_in = time.perf_counter() - started
        active = runtime.actors.active_count  # type: ignore[union-attr]
        runtime.actors.passivate_idle(time.monotonic())  # type: ignore[union-attr]
        await asyncio.sleep(0.2)
        gc.collect()
        passivated = harness.rss_bytes()
        per_actor_kb = await traced_actor_cost(runtime, min(SAMPLE, count))
    finally:
        await runtime.stop()
    growth_mb = (passivated - baseline) / 2**20
    passed = growth_mb <= GROWTH_TARGET_MB and per_actor_kb <= PER_ACTOR_TARGET_KB
    return Row(
        key="P5",
        what=f"{count:,} contacts touched once",
        measured=f"growth {growth_mb:.0f} MB after passivation; {per_actor_kb:.1f} KB per active actor",
        reference="RSS before",
        target=f"<= {GROWTH_TARGET_MB} MB; <= {PER_ACTOR_TARGET_KB} KB/actor",
        passed=None if quick else passed,
        notes=f"{count / touched_in:,.0f} touches/s; {active:,} actors were live before passivation",
    )
