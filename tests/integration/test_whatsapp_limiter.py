"""The per-number throughput limiter holds across processes: two Redis clients share one schedule."""

from __future__ import annotations

import asyncio
import time
import uuid

from redis.asyncio import Redis

from server.channels.whatsapp.limiter import ThroughputLimiter, clamp_rate
from tests.conftest import ServiceURLs


async def test_two_clients_share_one_number(services: ServiceURLs) -> None:
    prefix = f"konvo:limiter-{uuid.uuid4().hex[:8]}:"
    first, second = Redis.from_url(services.redis_url), Redis.from_url(services.redis_url)
    try:
        limiters = [ThroughputLimiter(first, prefix), ThroughputLimiter(second, prefix)]
        rate, count = 200, 120
        started = time.monotonic()
        waits = await asyncio.gather(*(limiters[i % 2].reserve("pn_1", rate) for i in range(count)))
        elapsed = time.monotonic() - started
        # Every reservation took its own slot 1/rate apart, whichever client asked: the last one
        # waits (count - 1)/rate from the first, minus the time the burst itself took.
        assert max(waits) <= (count - 1) / rate + 1e-6
        assert max(waits) >= (count - 1) / rate - elapsed - 1e-6
        other = await limiters[0].reserve("pn_2", rate)  # another number has its own schedule
        assert other == 0
    finally:
        await first.aclose()
        await second.aclose()


def test_rate_is_kept_within_what_meta_offers() -> None:
    assert clamp_rate(None) == 80 and clamp_rate(5000) == 1000 and clamp_rate(0.1) == 1
