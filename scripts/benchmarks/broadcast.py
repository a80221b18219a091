"""Benchmark: a template broadcast to N contacts at a per-number limit, against the loopback Graph API.

The whole product path runs: the broadcast runner freezes the audience, starts each recipient
through its contact actor (CAS write, outbox), the WhatsApp channel sends through the Redis
throughput limiter to the Graph API fake (a process of its own, ``graph_fake.py``, so its
validation of every request against Meta's OpenAPI description is not charged to the server).
The rate is measured where Meta would see it: the fake's accepted requests, over the steady part
of the run (after the first second). The cost per message (CPU of each process from /proc, the
store work counted by the runtime's command monitoring; ``costs.py``) is measured from the
broadcast's creation until every message is at the fake, against issue 19's targets.

    .venv/bin/python scripts/benchmarks/broadcast.py                    # 100,000 contacts at 1,000/s
    .venv/bin/python scripts/benchmarks/broadcast.py --contacts 5000    # a shorter run
    .venv/bin/python scripts/benchmarks/broadcast.py --sandbox          # sandbox channel, no limiter
    .venv/bin/python scripts/benchmarks/broadcast.py --quick            # 100 contacts, no verdict

Uses KONVO_MONGODB_URI / KONVO_REDIS_URL when set, else embedded services. Exit status 1 when a
contact got no message or two, or the fake refused a request.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import sys
import time
import uuid
from collections.abc import Coroutine
from contextlib import nullcontext
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scripts.benchmarks.costs import CostWindow, EventCosts, StoreWork, print_costs  # noqa: E402
from scripts.benchmarks.graph_fake import GraphFakeProcess  # noqa: E402
from scripts.benchmarks.harness import (  # noqa: E402
    WORKSPACE,
    Services,
    local_security,
    phone,
    rss_bytes,
    services,
    workspace,
)
from scripts.benchmarks.proc_cpu import CpuUsage  # noqa: E402
from server.channels.whatsapp.client import RetryPolicy  # noqa: E402
from server.config import Settings  # noqa: E402
from server.ids import ContactKey  # noqa: E402
from server.runtime import Runtime  # noqa: E402
from server.store.contacts import new_contact  # noqa: E402
from server.triggers.broadcasts import create_broadcast, progress  # noqa: E402
from server.web.heap import settle_after_startup  # noqa: E402

TEMPLATE = {
    "name": "bench_notice",
    "language": "es",
    "category": "UTILITY",
    "components": [{"type": "BODY", "text": "Aviso para {{1}}"}],
}
IMPORT_BATCH = 5000
WARMUP = 1.0
QUICK_CONTACTS = 100
TARGETS = {"server": 0.7, "store": 1.5}  # CPU ms per message (issue 19)
MIN_RATE = 300  # messages/s end to end (issue 19)


async def _contacts(runtime: Runtime, count: int) -> None:
    now = runtime.clock.now()
    for start in range(0, count, IMPORT_BATCH):
        batch = []
        for index in range(start, min(count, start + IMPORT_BATCH)):
            document = new_contact(ContactKey(WORKSPACE, phone(index)), now)
            document.update(opted_in=True, name=f"Cliente {index}")
            batch.append(document)
        await runtime.services.audience.insert_many(batch)


async def _template(runtime: Runtime) -> None:
    now = runtime.clock.now()
    await runtime.templates.insert(
        {
            "_id": "tpl_bench",
            "workspace_id": WORKSPACE,
            **TEMPLATE,
            "status": "APPROVED",
            "created_at": now,
            "updated_at": now,
        }
    )


def _rate(accepted: list[tuple[float, str]], rate: int) -> dict[str, Any]:
    stamps = sorted(at for at, _ in accepted)
    steady = [at for at in stamps if at >= stamps[0] + WARMUP] if stamps else []
    span = steady[-1] - steady[0] if len(steady) > 1 else 0.0
    per_second = (len(steady) - 1) / span if span else 0.0
    return {
        "at_graph_api": len(accepted),
        "distinct_recipients": len({to for _, to in accepted}),
        "steady_per_s": round(per_second, 1),
        "of_limit": f"{per_second / rate:.1%}",
    }


async def _watch(runtime: Runtime, broadcast_id: str, began: float) -> dict[str, Any]:
    last = 0.0
    while True:
        found = await runtime.services.broadcasts.find(broadcast_id)
        assert found is not None
        if found["status"] in ("completed", "failed", "cancelled"):
            return found
        if time.monotonic() - last > 10:
            last = time.monotonic()
            counts = await progress(runtime.services, found)
            actors = runtime.actors.active_count if runtime.actors else 0
            print(
                f"  {time.monotonic() - began:7.1f} s  started {counts.started:>7}  sent {counts.sent:>7}"
                f"  rss {rss_bytes() / 2**20:.0f} MiB  actors {actors}",
                flush=True,
            )
        await asyncio.sleep(0.2)


async def run(services: Services, count: int, rate: int, sandbox: bool, quick: bool) -> dict[str, Any]:
    settings = services.settings.model_copy(update={"store_stats": True})
    runtime = Runtime(settings)
    stats = runtime.database.stats
    assert stats is not None
    template = (TEMPLATE["name"], TEMPLATE["language"], TEMPLATE["category"], TEMPLATE["components"])
    # The fake starts first: its start blocks this loop, which must not stall the runtime's leases.
    with GraphFakeProcess(validate=True, templates=[template]) if not sandbox else nullcontext() as fake:
        await runtime.start()
        try:
            await workspace(runtime)
            await _template(runtime)
            if fake is not None:
                from tests.support.whatsapp import connect_fake

                await connect_fake(runtime, WORKSPACE, fake, throughput=rate)  # type: ignore[arg-type]
                # The product's timeouts, not the tests' 0.5 s (connect_fake's): on a loaded machine
                # the loop lags past 0.5 s after the fake has answered, and a send whose answer is
                # lost ends OUTCOME_UNKNOWN (never sent twice): that measures the machine, not us.
                runtime.graph.policy = RetryPolicy()
            began = time.monotonic()
            await _contacts(runtime, count)
            setup = time.monotonic() - began
            # The runtime runs in this process: it is the server whose CPU is measured.
            processes = {
                "server": os.getpid(),
                "store": services.store_pid,
                "redis": services.redis_pid,
                "fake": fake.pid if fake is not None else None,
            }
            window = CostWindow(processes, lambda: StoreWork.of(stats))
            params = {"body": ["{{contact.name}}"]}
            settle_after_startup()  # what ``konvo serve`` does once it listens
            profiler = _profiler()
            window.open()
            began = time.monotonic()
            broadcast = await create_broadcast(
                runtime.services,
                WORKSPACE,
                {"template": {**TEMPLATE, "params": params}, "segment": {"all": []}},
            )
            found = await _watch(runtime, broadcast["_id"], began)
            if fake is not None:  # each send is answered before its turn ends; this is a bound
                await fake.wait_requests(count, 30)
            usage, work = window.close()
            elapsed = time.monotonic() - began
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(os.environ["KONVO_BENCH_PROFILE"])
            counts = await progress(runtime.services, found)
            report: dict[str, Any] = {
                "contacts": count,
                "limit_per_s": rate if not sandbox else None,
                "status": found["status"],
                "import_s": round(setup, 1),
                "broadcast_s": round(elapsed, 1),
                "started": counts.started,
                "sent": counts.sent,
                "failed": counts.failed,
                "queued": counts.queued,
                "overall_per_s": round(counts.started / elapsed, 1),
                "rss_mib": round(rss_bytes() / 2**20),
            }
            if fake is not None:
                accepted = [(at, to) for at, to, status in await fake.log() if status == 200]
                report.update(_rate(accepted, rate), refused=len(await fake.rejected()))
        finally:
            await runtime.stop()
    report["costs"] = _costs(report, usage, work, quick)
    return report


def _profiler() -> cProfile.Profile | None:
    """``KONVO_BENCH_PROFILE=path``: cProfile (CPU time) of this process over the measured window."""
    if not os.environ.get("KONVO_BENCH_PROFILE"):
        return None
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    return profiler


def _costs(report: dict[str, Any], usage: CpuUsage, work: StoreWork | None, quick: bool) -> EventCosts:
    """Issue 19's row: CPU and store work per message, the end-to-end rate, each recipient once."""
    count = report["contacts"]
    delivered = report.get("distinct_recipients", report["started"])
    once = delivered == count and report.get("at_graph_api", count) == count and not report.get("refused")
    end_to_end = delivered / usage.wall_seconds if usage.wall_seconds else 0.0
    return EventCosts(
        "broadcast",
        count,
        "message",
        usage,
        work,
        TARGETS,
        checks={
            f">= {MIN_RATE} msg/s end to end ({end_to_end:,.1f})": end_to_end >= MIN_RATE,
            "every recipient exactly once": once,
        },
        quick=quick,
        note="server = the bench process (the runtime runs in it)",
    )


def served_loop(main: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """Run the runtime on the event loop ``konvo serve`` has (uvicorn's "auto": uvloop when
    installed, as ``uvicorn[standard]`` installs it); on asyncio's own loop the bench charged the
    server for a loop it does not run (a third more CPU per message)."""
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - konvo serve then runs on asyncio's loop too
        runner = asyncio.Runner()
    with runner:
        return runner.run(main)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=1000, help="the number's messages per second")
    parser.add_argument("--sandbox", action="store_true", help="sandbox channel (no Graph API, no limiter)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_CONTACTS} contacts, no verdict")
    args = parser.parse_args()
    count = QUICK_CONTACTS if args.quick else args.contacts
    external = os.environ.get("KONVO_MONGODB_URI") and os.environ.get("KONVO_REDIS_URL")
    if external:
        settings = Settings(mongodb_db=f"bench_{uuid.uuid4().hex[:8]}")
        settings = settings.model_copy(update=local_security(settings))
        report = served_loop(run(Services(settings), count, args.rate, args.sandbox, args.quick))
    else:
        with services() as running:
            report = served_loop(run(running, count, args.rate, args.sandbox, args.quick))
    costs = report.pop("costs")
    for key, value in report.items():
        print(f"{key:>20}: {value}")
    print_costs([costs])
    ok = report["started"] == count and report.get("refused", 0) == 0
    if "distinct_recipients" in report:
        ok = ok and report["distinct_recipients"] == report["at_graph_api"] == count
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
