"""P3: latency under half of P1's load. Webhooks are POSTed at half P1's measured webhooks/s (or,
when P1 did not run in this invocation, half the rate of an unpaced burst measured here first);
per message, the time from its POST to its outbound request arriving at the Graph API fake
(matched by recipient). Target: p99 <= 10 x p50 of a bare store round trip (``find_one``) + 100 ms.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pymongo import AsyncMongoClient

from scripts.benchmarks import harness, inbound, served
from scripts.benchmarks.report import Row
from scripts.benchmarks.timers import percentile
from server.config import Settings
from server.ids import new_id
from server.store.database import CLIENT_OPTIONS

ROUND_TRIPS = 500


async def store_round_trip_p50(settings: Settings, doc_id: str) -> float:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_uri, **CLIENT_OPTIONS)
    try:
        contacts = client[settings.mongodb_db]["contacts"]
        await contacts.find_one({"_id": doc_id})
        times = []
        for _ in range(ROUND_TRIPS):
            started = time.perf_counter()
            await contacts.find_one({"_id": doc_id})
            times.append(time.perf_counter() - started)
        return percentile(times, 0.5)
    finally:
        await client.close()


async def measure(settings: Settings, count: int, quick: bool) -> Row:
    full_rate = inbound.last_rate
    burst = 0 if full_rate is not None else max(20, count // 2)
    with inbound.graph_fake() as fake:
        template = await inbound.seed(settings, fake, count + burst)
        round_trip = await store_round_trip_p50(settings, template["_id"])
        bodies = [
            served.text_webhook(fake.phone_number_id, harness.phone(i), f"wamid.{new_id('l')}")
            for i in range(1, count + burst + 1)
        ]
        with served.konvo_serve(settings) as url:
            async with served.client(url) as http:
                if full_rate is None:  # P1's rate is unknown: measure it on the first contacts
                    sent_before, started = len(fake.requests), time.perf_counter()
                    await served.post_all(http, bodies[:burst])
                    await inbound.wait_done(settings, fake, sent_before, burst, template["_id"])
                    full_rate = burst / (time.perf_counter() - started)
                rate = full_rate / 2
                paced = bodies[burst:]
                posted_at: dict[str, float] = {}
                sent_before = len(fake.requests)
                begin = time.monotonic()

                async def pace(i: int) -> None:
                    await asyncio.sleep(max(0.0, begin + i / rate - time.monotonic()))

                def on_post(i: int, at: float) -> None:
                    posted_at[harness.phone(burst + 1 + i).lstrip("+")] = at

                await served.post_all(http, paced, on_post=on_post, pace=pace)
                await inbound.wait_done(settings, fake, sent_before, len(paced), template["_id"])
        arrived = {
            str(r.body["to"]).lstrip("+"): r.at
            for r in fake.requests[sent_before:]
            if isinstance(r.body, dict) and r.status == 200 and "to" in r.body  # not read receipts
        }
    latencies = [arrived[to] - at for to, at in posted_at.items() if to in arrived]
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    target = 10 * round_trip + 0.1
    return Row(
        key="P3",
        what=f"{len(paced):,} webhooks at {rate:,.0f}/s (half of {full_rate:,.0f}/s)",
        measured=f"p99 {p99 * 1000:,.0f} ms (p50 {p50 * 1000:,.0f} ms)",
        reference=f"store p50 {round_trip * 1000:.2f} ms",
        target=f"p99 <= {target * 1000:,.0f} ms",
        passed=None if quick else (p99 <= target and len(latencies) == len(paced)),
        notes=f"{len(latencies):,} of {len(paced):,} messages matched at the fake",
    )
