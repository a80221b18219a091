"""The per-number throughput limiter holds across processes: two Redis clients share one schedule."""

from __future__ import annotations

import asyncio
import time
import uuid

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from server.channels.whatsapp.limiter import ThroughputLimiter, clamp_rate
from server.clock import VirtualTiming
from server.dev.embedded import free_port
from tests.conftest import ServiceURLs
from tests.support.timing import asleep, run_on, until


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


async def _evalsha_calls(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int((stats.get("cmdstat_evalsha") or {}).get("calls", 0))


async def test_senders_of_one_process_queue_in_order_and_reserve_slots_in_blocks(
    services: ServiceURLs,
) -> None:
    """A broadcast keeps hundreds of sends waiting: they are served in arrival order from blocks of
    slots, not each with a reservation of its own (issue 19: three per message under load)."""
    redis = Redis.from_url(services.redis_url)
    timing = VirtualTiming()
    try:
        limiter = ThroughputLimiter(redis, f"konvo:limiter-{uuid.uuid4().hex[:8]}:", timing=timing)
        granted: list[int] = []

        async def send(index: int) -> None:
            await limiter.acquire("pn_block", 1000)
            granted.append(index)

        before = await _evalsha_calls(redis)
        await run_on(timing, asyncio.gather(*(send(i) for i in range(200))))
        reservations = await _evalsha_calls(redis) - before
        assert granted == list(range(200))
        # Blocks of 50 slots at 1,000/s; on virtual time no wake-up is late, so no slot is given up.
        assert reservations == 4
    finally:
        await redis.aclose()


async def test_a_sender_that_stops_waiting_leaves_its_slot_to_the_next(services: ServiceURLs) -> None:
    redis = Redis.from_url(services.redis_url)
    timing = VirtualTiming()
    try:
        limiter = ThroughputLimiter(redis, f"konvo:limiter-{uuid.uuid4().hex[:8]}:", timing=timing)
        granted: list[int] = []

        async def send(index: int) -> None:
            await limiter.acquire("pn_cancel", 20)
            granted.append(index)

        tasks = [asyncio.create_task(send(i)) for i in range(4)]
        await asyncio.sleep(0)  # every sender queued
        tasks[1].cancel()
        await run_on(timing, asyncio.gather(*tasks, return_exceptions=True))
        assert granted == [0, 2, 3]
        assert tasks[1].cancelled()
        # The number's queue starts again after it emptied.
        await run_on(timing, asyncio.ensure_future(limiter.acquire("pn_cancel", 20)))
    finally:
        await redis.aclose()


async def test_a_sender_waits_for_its_slot_on_the_limiters_timing(services: ServiceURLs) -> None:
    """At 1 message/s the second sender goes a second after the first: not while time stands
    still, not half a second later, and at once when its slot comes."""
    redis = Redis.from_url(services.redis_url)
    timing = VirtualTiming()
    try:
        limiter = ThroughputLimiter(redis, f"konvo:limiter-{uuid.uuid4().hex[:8]}:", timing=timing)
        first = asyncio.ensure_future(limiter.acquire("pn_slow", 1))
        second = asyncio.ensure_future(limiter.acquire("pn_slow", 1))
        await until(first.done, "the first sender's slot (free at once)")
        delay = await asleep(timing)  # a second from Redis's schedule, less the round trip
        assert 0.5 < delay <= 1.0 and not second.done()
        await timing.advance(0.5)
        assert not second.done()
        await timing.advance(delay - 0.5)
        await until(second.done, "the second sender's slot")
    finally:
        await redis.aclose()


async def test_waiting_senders_learn_that_redis_is_unreachable() -> None:
    """No sender hangs on a queue whose reservations fail: each gets the error (the send stays in
    the outbox and is retried)."""
    redis = Redis.from_url(f"redis://127.0.0.1:{free_port()}", socket_connect_timeout=1)
    try:
        limiter = ThroughputLimiter(redis, "konvo:limiter-down:")
        outcomes = await asyncio.gather(
            *(limiter.acquire("pn_down", 80) for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(outcome, RedisConnectionError) for outcome in outcomes), outcomes
    finally:
        await redis.aclose()
