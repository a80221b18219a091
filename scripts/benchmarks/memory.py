"""P5: memory of many contacts touched once: resident growth once actors are passivated, and the
cost of each actor while active.

RSS rarely shrinks when Python frees objects, so the per-actor cost is measured with tracemalloc on
a sample of fresh contacts: memory *retained* (traced and still held, counted from just before the
sample is touched) with their actors live, each holding the contact document of its one turn,
packed, as an idle actor does. What passivation leaves behind per contact (retained after it) has a
target of its own, so a leak shows in the verdict whether or not passivation frees anything. The
notes give the size of that document as objects and packed, and the same for contacts reloaded
from the store (touched again after passivation: decoded BSON rather than a new document).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
import tracemalloc
from dataclasses import dataclass
from typing import Any

import bson

from scripts.benchmarks import harness
from scripts.benchmarks.report import Row
from server.actors.events import InboundMessage, TurnResult
from server.ids import ContactKey, new_id
from server.runtime import Runtime

GROWTH_TARGET_MB = 300
PER_ACTOR_TARGET_KB = 4
KEPT_TARGET_KB = 0.5  # retained per contact once its actor is passivated
BATCH = 400
SAMPLE = 2_000
SAMPLE_FIRST = 20_000_000


async def touch(runtime: Runtime, first: int, count: int, results: list[TurnResult] | None = None) -> None:
    assert runtime.actors is not None
    for start in range(first, first + count, BATCH):
        futures = [
            runtime.actors.tell(
                ContactKey(harness.WORKSPACE, harness.phone(i)),
                InboundMessage(new_id("in"), runtime.clock.now(), text="hola"),
            )
            for i in range(start, min(start + BATCH, first + count))
        ]
        done = await asyncio.gather(*futures)
        if results is not None:
            results.extend(done)


def deep_size(values: list[Any]) -> int:
    """Bytes of the objects reachable from ``values`` (containers, strings, datetimes), each once."""
    seen: set[int] = set()
    pending = list(values)
    total = 0
    while pending:
        value = pending.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        total += sys.getsizeof(value)
        if isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list | tuple):
            pending.extend(value)
    return total


@dataclass
class ActorCost:
    live_kb: float  # per live actor: traced memory retained while it is live
    document_kb: float  # the contact document of one turn as Python objects (by size)
    packed_kb: float  # the same packed as BSON, as an idle actor caches it
    kept_kb: float  # traced memory still retained per contact after passivation (a leak)


async def traced_actor_cost(runtime: Runtime, first: int, sample: int) -> ActorCost:
    """Per-actor memory over ``sample`` contacts from ``first``, touched once each, from tracemalloc."""
    assert runtime.actors is not None
    tracemalloc.start()
    try:
        results: list[TurnResult] = []
        await touch(runtime, first, sample, results)
        document = deep_size([result.contact for result in results])
        packed = sum(sys.getsizeof(bson.encode(result.contact)) for result in results)
        del results
        gc.collect()
        live, _ = tracemalloc.get_traced_memory()
        runtime.actors.passivate_idle(0)
        await asyncio.sleep(0.2)  # let anything still running after the turns finish
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    kb = sample * 1024
    return ActorCost(live / kb, document / kb, packed / kb, after / kb)


async def measure(services: harness.Services, count: int, quick: bool) -> Row:
    settings = services.settings
    runtime = Runtime(settings.model_copy(update={"actor_idle_seconds": 3600.0}))
    await runtime.start()
    try:
        assert runtime.actors is not None
        await harness.workspace(runtime)
        await touch(runtime, 10_000_000, 200)  # warm caches and connection pools
        runtime.actors.passivate_idle(0)
        gc.collect()
        baseline = harness.rss_bytes()
        started = time.perf_counter()
        await touch(runtime, 1, count)
        touched_in = time.perf_counter() - started
        active = runtime.actors.active_count
        peak = harness.rss_bytes()
        runtime.actors.passivate_idle(0)
        await asyncio.sleep(0.2)
        gc.collect()
        passivated = harness.rss_bytes()
        sample = min(SAMPLE, count)
        fresh = await traced_actor_cost(runtime, SAMPLE_FIRST, sample)
        reloaded = await traced_actor_cost(runtime, SAMPLE_FIRST, sample)  # stored now: loaded back
    finally:
        await runtime.stop()
    growth_mb = (passivated - baseline) / 2**20
    peak_mb = (peak - baseline) / 2**20
    passed = (
        growth_mb <= GROWTH_TARGET_MB
        and max(fresh.live_kb, reloaded.live_kb) <= PER_ACTOR_TARGET_KB
        and max(fresh.kept_kb, reloaded.kept_kb) <= KEPT_TARGET_KB
    )
    return Row(
        key="P5",
        what=f"{count:,} contacts touched once",
        measured=(
            f"growth {growth_mb:.0f} MB after passivation; {fresh.live_kb:.1f} KB per active actor"
            f" ({reloaded.live_kb:.1f} KB reloaded from the store), {fresh.kept_kb * 1024:.0f} B retained"
            f" per contact after passivation ({reloaded.kept_kb * 1024:.0f} B reloaded)"
        ),
        reference="RSS before",
        target=(
            f"<= {GROWTH_TARGET_MB} MB; <= {PER_ACTOR_TARGET_KB} KB/actor;"
            f" <= {KEPT_TARGET_KB * 1024:.0f} B kept"
        ),
        passed=None if quick else passed,
        notes=(
            f"{count / touched_in:,.0f} touches/s; {active:,} actors were live before passivation"
            f" (RSS +{peak_mb:.0f} MB then); contact document {fresh.document_kb:.1f} KB as objects"
            f" ({reloaded.document_kb:.1f} KB reloaded), cached packed: {fresh.packed_kb:.1f} KB"
            f" ({reloaded.packed_kb:.1f} KB)"
        ),
    )
