"""P2: webhook endpoint cost. Requests/s of ``konvo serve``'s WhatsApp webhook for signed, valid
``delivered`` statuses (nothing for a flow to move: each is stored and parked) vs a bare Starlette
endpoint on the same uvicorn settings in its own process, same client, bodies and concurrency."""

from __future__ import annotations

from scripts.benchmarks import harness, served
from scripts.benchmarks.inbound import graph_fake
from scripts.benchmarks.report import Row
from server.config import Settings
from server.ids import new_id
from server.runtime import Runtime

TARGET_RATIO = 0.4


async def requests_per_second(url: str, bodies: list[bytes], warmup: int) -> float:
    async with served.client(url) as http:
        await served.post_all(http, bodies[:warmup])
        return (len(bodies) - warmup) / await served.post_all(http, bodies[warmup:])


async def measure(settings: Settings, count: int, quick: bool) -> Row:
    warmup = min(200, count // 5)
    with graph_fake() as fake:
        runtime = Runtime(settings.model_copy(update={"start_timer_worker": False}))
        await runtime.start()
        try:
            await harness.workspace(runtime)
            await served.add_channel(runtime, fake.channel_fields())
        finally:
            await runtime.stop()
        bodies = [
            served.status_webhook(fake.phone_number_id, harness.phone(i), f"wamid.{new_id('s')}")
            for i in range(count + warmup)
        ]
        with served.bare_starlette() as url:
            reference = await requests_per_second(url, bodies, warmup)
        with served.konvo_serve(settings) as url:
            rate = await requests_per_second(url, bodies, warmup)
    ratio = rate / reference
    return Row(
        key="P2",
        what=f"{count:,} signed status webhooks (no flow to move)",
        measured=f"{rate:,.0f} req/s",
        reference=f"{reference:,.0f} req/s bare Starlette",
        target=f">= {TARGET_RATIO:.0%} ({ratio:.0%})",
        passed=None if quick else ratio >= TARGET_RATIO,
        notes=f"{served.CONCURRENCY} concurrent httpx requests; same uvicorn config for both",
    )
