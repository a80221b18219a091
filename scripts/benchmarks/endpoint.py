"""P2: the acknowledge path's cost. Server CPU per acknowledged webhook (from its first byte until
its 200) of ``konvo serve``'s WhatsApp webhook for signed, valid ``delivered`` statuses (nothing
for a flow to move: each is stored and parked), against a bare Starlette endpoint on the same
uvicorn settings measured in the same run, same bodies, concurrency and load generator.

The load generator (``loadgen.py``, raw asyncio streams in a process of its own) prints its own
CPU per request, so the figure is the server's and not the client's: with httpx the bare
endpoint's "520 req/s" had been the client's limit (issue 19). Requests/s are printed as well.

The store is set up as one that took this version more than a day ago (``upgrades``, see
``server/store/legacy_ids.py``): a fresh store would look up every report's bare legacy id for its
first day, which is not the steady state the row is about. The bare endpoint gets the same bodies
``BARE_REPEATS`` times over, so its window holds enough clock ticks of CPU to be read.
"""

from __future__ import annotations

from scripts.benchmarks import harness, served
from scripts.benchmarks.costs import CostWindow, EventCosts
from scripts.benchmarks.inbound import graph_fake
from scripts.benchmarks.loadgen import LoadGenerator
from scripts.benchmarks.proc_cpu import wait_quiet
from scripts.benchmarks.report import Row
from server.ids import new_id
from server.runtime import Runtime
from server.store.legacy_ids import MARGIN, UPGRADE

BARE_REPEATS = 4  # the bare endpoint costs ~1/20 of the server's: more requests, same precision
TARGET_RATIO = 4.0  # server CPU per ack, at most this many times the bare endpoint's


async def ack_costs(
    key: str,
    services: harness.Services,
    server: served.Served,
    requests: list[tuple[dict[str, str], bytes]],
    warmup: int,
    counted: bool,
) -> tuple[EventCosts, float]:
    """What acknowledging ``requests`` (after ``warmup`` of them) cost; and requests/s."""
    url = served.webhook_url(server.url)
    with LoadGenerator(url, requests, served.CONCURRENCY, warmup=warmup) as load:
        processes = served.processes(services, server, load)
        await wait_quiet({"server": server.pid})
        window = CostWindow(processes, server.store_work if counted else None)
        window.open()
        result = await load.run()
        served.check_answers(result)
        usage, work = window.close()
    events = len(requests) - warmup
    return EventCosts(key, events, "ack", usage, work), events / result.seconds


async def measure(services: harness.Services, count: int, quick: bool) -> Row:
    settings = services.settings
    warmup = min(200, count // 5)
    with graph_fake() as fake:
        runtime = Runtime(settings.model_copy(update={"start_timer_worker": False}))
        await runtime.start()
        try:
            await harness.workspace(runtime)
            await served.add_channel(runtime, fake.channel_fields())
            long_ago = runtime.clock.now() - 2 * MARGIN  # an upgrade done days ago: steady state
            await runtime.database.collection("upgrades").update_one(
                {"_id": UPGRADE}, {"$set": {"at": long_ago}}
            )
        finally:
            await runtime.stop()
        requests = served.signed(
            [
                served.status_webhook(fake.phone_number_id, harness.phone(i), f"wamid.{new_id('s')}")
                for i in range(count + warmup)
            ]
        )
    with served.bare_starlette() as server:
        # The bare app has no store or Redis: only its own process and the load generator count.
        alone = harness.Services(settings)
        repeated = requests[:warmup] + requests[warmup:] * BARE_REPEATS
        bare, bare_rate = await ack_costs("P2 bare", alone, server, repeated, warmup, counted=False)
    with served.konvo_serve(settings) as server:
        konvo, rate = await ack_costs("P2", services, server, requests, warmup, counted=True)
    server_ms, bare_ms = konvo.ms("server"), bare.ms("server")
    assert server_ms is not None and bare_ms is not None
    ratio = server_ms / bare_ms if bare_ms else float("inf")
    konvo.targets = {"server": round(TARGET_RATIO * bare_ms, 3)}
    konvo.quick = bare.quick = quick
    konvo.note = f"server target: {TARGET_RATIO:g} x the bare endpoint's {bare_ms:.3f} ms in this run"
    loadgen_ms = konvo.ms("loadgen") or 0.0
    return Row(
        key="P2",
        what=f"{count:,} signed status webhooks (no flow to move)",
        measured=f"{server_ms:.3f} server CPU ms/ack ({rate:,.0f} req/s)",
        reference=f"bare Starlette {bare_ms:.3f} ms ({bare_rate:,.0f} req/s)",
        target=f"<= {TARGET_RATIO:g}x ({ratio:.1f}x)",
        passed=None if quick else ratio <= TARGET_RATIO,
        notes=(
            f"{served.CONCURRENCY} concurrent requests from loadgen.py "
            f"({loadgen_ms:.3f} CPU ms per request); "
            f"same uvicorn config for both; req/s ratio {rate / bare_rate:.0%}"
        ),
        costs=[konvo, bare],
    )
