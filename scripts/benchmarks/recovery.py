"""P6: restart with many waiting runs: time until the server serves again and every timer is re-armed.

The Redis schedule is wiped before the restart, so re-arming is real work rather than a no-op.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta

from redis.asyncio import Redis

from scripts.benchmarks import harness
from scripts.benchmarks.report import Row
from scripts.benchmarks.timers import FLOW
from server.runtime import Runtime

TARGET_SECONDS = 30.0


async def measure(services: harness.Services, count: int, quick: bool) -> Row:
    settings = services.settings
    first = Runtime(settings)
    await first.start()
    try:
        await harness.workspace(first)
        _, template = await harness.waiting_template(first, FLOW)
        await harness.insert_clones(first, template, count, first.clock.now() + timedelta(hours=1))
    finally:
        await first.stop()
    queue = first.timers.queue_name  # the hash-tagged queue (server/redis_keys.py)
    redis = Redis.from_url(settings.redis_url or "")
    await redis.flushall()
    started = time.perf_counter()
    second = Runtime(settings)
    await second.start()
    serving = time.perf_counter() - started
    try:
        health = await second.health()
        deadline = time.monotonic() + 600
        armed = 0
        while time.monotonic() < deadline:
            armed = await redis.zcard(queue)
            if armed >= count + 1:
                break
            await asyncio.sleep(0.1)
        rearmed = time.perf_counter() - started
    finally:
        await second.stop()
        await redis.aclose()
    passed = bool(health["ok"]) and armed >= count + 1 and rearmed <= TARGET_SECONDS
    return Row(
        key="P6",
        what=f"restart with {count:,} waiting runs",
        measured=f"serving in {serving:.1f} s; {armed:,} timers re-armed in {rearmed:.1f} s",
        reference="-",
        target=f"<= {TARGET_SECONDS:.0f} s",
        passed=None if quick else passed,
        notes=f"machine load (1 min) {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
    )
