"""P3: latency under half of P1's load. Webhooks are POSTed at half P1's measured webhooks/s (or,
when P1 did not run in this invocation, half the rate of an unpaced burst measured here first);
per message, the time from its POST to its outbound request arriving at the Graph API fake
(matched by recipient). Target: p99 <= 10 x p50 of a bare store round trip (``find_one``) + 100 ms.
The paced part's cost per webhook is measured as P1's (``costs.py``).
"""

from __future__ import annotations

import time
from typing import Any

from pymongo import AsyncMongoClient

from scripts.benchmarks import harness, inbound, served
from scripts.benchmarks.costs import CostWindow, EventCosts
from scripts.benchmarks.loadgen import LoadGenerator
from scripts.benchmarks.proc_cpu import wait_quiet
from scripts.benchmarks.report import Row
from scripts.benchmarks.timers import percentile
from server.config import Settings
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


async def measure(services: harness.Services, count: int, quick: bool) -> Row:
    settings = services.settings
    full_rate = inbound.last_rate
    burst = 0 if full_rate is not None else max(20, count // 2)
    with inbound.graph_fake() as fake:
        template = await inbound.seed(settings, fake, count + burst)
        round_trip = await store_round_trip_p50(settings, template["_id"])
        with served.konvo_serve(settings) as server:
            url = served.webhook_url(server.url)
            if full_rate is None:  # P1's rate is unknown: measure it on the first contacts
                sent_before = await fake.received()
                with LoadGenerator(url, inbound.webhooks(fake, 1, burst, "l"), served.CONCURRENCY) as load:
                    started = time.perf_counter()
                    served.check_answers(await load.run())
                    # Only the burst's contacts: the paced part's are seeded waiting too.
                    burst_phones = [harness.phone(i) for i in range(1, burst + 1)]
                    await inbound.wait_done(
                        settings, fake, sent_before + burst, template["_id"], phones=burst_phones
                    )
                    full_rate = burst / (time.perf_counter() - started)
            rate = full_rate / 2
            paced = count
            sent_before = await fake.received()
            requests = inbound.webhooks(fake, burst + 1, paced, "l")
            with LoadGenerator(url, requests, served.CONCURRENCY, rate=rate) as load:
                processes = served.processes(services, server, load, fake)
                await wait_quiet({"server": server.pid, "store": services.store_pid})
                window = CostWindow(processes, server.store_work)
                window.open()
                posted = await load.run()
                served.check_answers(posted)
                done = await inbound.wait_done(settings, fake, sent_before + paced, template["_id"], window)
        arrived = {str(to).lstrip("+"): at for at, to, status in await fake.log(sent_before) if status == 200}
    usage, work = done.usage, done.work
    assert usage is not None
    posted_at = {harness.phone(burst + 1 + i).lstrip("+"): at for i, at in enumerate(posted.sent_at)}
    latencies = [arrived[to] - at for to, at in posted_at.items() if to in arrived]
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    target = 10 * round_trip + 0.1
    return Row(
        key="P3",
        what=f"{paced:,} webhooks at {rate:,.0f}/s (half of {full_rate:,.0f}/s)",
        measured=f"p99 {p99 * 1000:,.0f} ms (p50 {p50 * 1000:,.0f} ms)",
        reference=f"store p50 {round_trip * 1000:.2f} ms",
        target=f"p99 <= {target * 1000:,.0f} ms",
        passed=None if quick else (p99 <= target and len(latencies) == paced and not done.unapplied),
        notes=f"{len(latencies):,} of {paced:,} messages matched at the fake"
        + inbound.unapplied_note(done.unapplied),
        costs=[
            EventCosts(
                "P3",
                paced,
                "webhook",
                usage,
                work,
                checks={inbound.APPLIED: not done.unapplied},
                quick=quick,
                note=f"paced at {rate:,.0f}/s",
            )
        ],
    )
