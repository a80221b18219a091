"""The Graph client's retries on virtual time: the production policy (half-second backoff doubling
up to 20 s, a 60 s budget, Retry-After honoured) checked move by move, without waiting for it."""

from __future__ import annotations

import asyncio
from typing import Any

from server.channels.whatsapp.client import ApiResult, GraphClient, RetryPolicy
from server.channels.whatsapp.payloads import build
from server.clock import VirtualTiming
from tests.support.graph_api_fake import GraphApiFake
from tests.support.network import loopback_egress
from tests.support.timing import asleep, until

BODY = build({"kind": "text", "to": "+34600000501", "text": "hola"})  # what the channel sends


def channel_of(fake: GraphApiFake) -> dict[str, Any]:
    return {"workspace_id": "ws_retries", **fake.channel_fields()}


async def test_server_errors_are_retried_after_a_growing_backoff_then_sent(fake: GraphApiFake) -> None:
    timing = VirtualTiming()
    client = GraphClient(None, loopback_egress(), RetryPolicy(), timing=timing)
    fake.server_errors(times=3, status=503)
    started = timing.monotonic()
    try:
        sending = asyncio.create_task(client.send_message(channel_of(fake), BODY))
        for attempt in (1, 2, 3):
            delay = await asleep(timing)  # the client waits for its next attempt
            assert len(fake.requests) == attempt
            ceiling = 0.5 * 2 ** (attempt - 1)  # base 0.5 s doubling; half fixed, half jitter
            assert ceiling / 2 <= delay <= ceiling
            await timing.advance(delay * 0.99)
            assert len(fake.requests) == attempt and not sending.done()  # not a moment early
            await timing.advance(delay * 0.01)
            await until(lambda n=attempt: len(fake.requests) > n or sending.done(), "the next attempt")
        result: ApiResult = await sending
    finally:
        await client.close()
    assert result.ok and result.attempts == 4
    assert [r.fault for r in fake.requests] == ["2", "2", "2", None]
    assert 0.25 + 0.5 + 1.0 <= timing.monotonic() - started <= 0.5 + 1.0 + 2.0


async def test_retry_after_is_honoured_and_the_total_budget_ends_the_retries(fake: GraphApiFake) -> None:
    """Retry-After 25 s: tried at 0, 25 and 50 s; a fourth try at 75 s would pass the 60 s budget,
    so the send gives up at once, to be retried later by the outbox."""
    timing = VirtualTiming()
    client = GraphClient(None, loopback_egress(), RetryPolicy(), timing=timing)
    fake.server_errors(times=10, status=503, retry_after=25)
    started = timing.monotonic()
    try:
        sending = asyncio.create_task(client.send_message(channel_of(fake), BODY))
        for attempt in (1, 2):
            assert await asleep(timing) == 25.0
            assert len(fake.requests) == attempt
            await timing.advance(25.0)
            await until(lambda n=attempt: len(fake.requests) > n or sending.done(), "the next attempt")
        result = await sending
    finally:
        await client.close()
    assert not result.ok and result.retry and result.attempts == 3
    assert len(fake.requests) == 3 and timing.monotonic() - started == 50.0
    assert timing.sleeping == 0
