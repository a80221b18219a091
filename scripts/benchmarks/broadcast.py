"""Benchmark: a template broadcast to N contacts at a per-number limit, against the loopback Graph API.

The whole product path runs: the broadcast runner freezes the audience, starts each recipient
through its contact actor (CAS write, outbox), the WhatsApp channel sends through the Redis
throughput limiter to the Graph API fake (a process of its own, so its validation of every
request against Meta's OpenAPI description does not share the server's CPU). The rate is
measured where Meta would see it: the fake's accepted requests, over the steady part of the
run (after the first second).

    .venv/bin/python scripts/benchmarks/broadcast.py                    # 100,000 contacts at 1,000/s
    .venv/bin/python scripts/benchmarks/broadcast.py --contacts 5000    # a shorter run
    .venv/bin/python scripts/benchmarks/broadcast.py --sandbox          # sandbox channel, no limiter

Uses KONVO_MONGODB_URI / KONVO_REDIS_URL when set, else embedded services. Exit status 1 when a
contact got no message or two, or the fake refused a request.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scripts.benchmarks.harness import (  # noqa: E402
    WORKSPACE,
    local_security,
    phone,
    rss_bytes,
    services,
    workspace,
)
from server.config import Settings  # noqa: E402
from server.ids import ContactKey  # noqa: E402
from server.runtime import Runtime  # noqa: E402
from server.store.contacts import new_contact  # noqa: E402
from server.triggers.broadcasts import create_broadcast, progress  # noqa: E402

TEMPLATE = {
    "name": "bench_notice",
    "language": "es",
    "category": "UTILITY",
    "components": [{"type": "BODY", "text": "Aviso para {{1}}"}],
}
IMPORT_BATCH = 5000
WARMUP = 1.0


async def _contacts(runtime: Runtime, count: int) -> None:
    now = runtime.clock.now()
    for start in range(0, count, IMPORT_BATCH):
        batch = []
        for index in range(start, min(count, start + IMPORT_BATCH)):
            document = new_contact(ContactKey(WORKSPACE, phone(index)), now)
            document.update(opted_in=True, name=f"Cliente {index}")
            batch.append(document)
        await runtime.triggers.audience.insert_many(batch)


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


def _fake_process(conn: Any) -> None:
    """The Graph API fake in its own process: sends its channel fields, then its log when asked."""
    from tests.support.graph_api_fake import GraphApiFake

    async def serve() -> None:
        fake = await GraphApiFake().start()
        fake.add_template(TEMPLATE["name"], "es", "UTILITY", TEMPLATE["components"])
        conn.send(fake.channel_fields())
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        accepted = [(r.at, (r.body or {}).get("to")) for r in fake.requests if r.status == 200]
        conn.send((accepted, len(fake.rejected())))
        await fake.stop()

    asyncio.run(serve())


class _RemoteFake:
    """What ``connect_fake`` reads of a fake: its channel fields."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self._fields = fields

    def channel_fields(self) -> dict[str, Any]:
        return self._fields


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
        found = await runtime.triggers.broadcasts.find(broadcast_id)
        assert found is not None
        if found["status"] in ("completed", "failed", "cancelled"):
            return found
        if time.monotonic() - last > 10:
            last = time.monotonic()
            counts = await progress(runtime, found)
            actors = runtime.actors.active_count if runtime.actors else 0
            print(
                f"  {time.monotonic() - began:7.1f} s  started {counts.started:>7}  sent {counts.sent:>7}"
                f"  rss {rss_bytes() / 2**20:.0f} MiB  actors {actors}",
                flush=True,
            )
        await asyncio.sleep(0.2)


async def run(settings: Settings, count: int, rate: int, sandbox: bool) -> dict[str, Any]:
    runtime = Runtime(settings)
    await runtime.start()
    loop = asyncio.get_running_loop()
    spawn = multiprocessing.get_context("spawn")
    conn, process = None, None
    try:
        await workspace(runtime)
        await _template(runtime)
        if not sandbox:
            from tests.support.whatsapp import connect_fake

            conn, child = spawn.Pipe()
            fake_process = spawn.Process(target=_fake_process, args=(child,), daemon=True)
            fake_process.start()
            process = fake_process
            fields = await loop.run_in_executor(None, conn.recv)
            await connect_fake(runtime, WORKSPACE, _RemoteFake(fields), throughput=rate)  # type: ignore[arg-type]
        began = time.monotonic()
        await _contacts(runtime, count)
        setup = time.monotonic() - began
        params = {"body": ["{{contact.name}}"]}
        began = time.monotonic()
        broadcast = await create_broadcast(
            runtime, WORKSPACE, {"template": {**TEMPLATE, "params": params}, "segment": {"all": []}}
        )
        found = await _watch(runtime, broadcast["_id"], began)
        elapsed = time.monotonic() - began
        counts = await progress(runtime, found)
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
        if conn is not None:
            conn.send("report")
            accepted, refused = await loop.run_in_executor(None, conn.recv)
            report.update(_rate(accepted, rate), refused=refused)
        return report
    finally:
        await runtime.stop()
        if process is not None:
            process.join(10)
            if process.is_alive():
                process.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=1000, help="the number's messages per second")
    parser.add_argument("--sandbox", action="store_true", help="sandbox channel (no Graph API, no limiter)")
    args = parser.parse_args()
    external = os.environ.get("KONVO_MONGODB_URI") and os.environ.get("KONVO_REDIS_URL")
    if external:
        settings = Settings(mongodb_db=f"bench_{uuid.uuid4().hex[:8]}")
        settings = settings.model_copy(update=local_security(settings))
        report = asyncio.run(run(settings, args.contacts, args.rate, args.sandbox))
    else:
        with services() as settings:
            report = asyncio.run(run(settings, args.contacts, args.rate, args.sandbox))
    for key, value in report.items():
        print(f"{key:>20}: {value}")
    ok = report["started"] == args.contacts and report.get("refused", 0) == 0
    if "distinct_recipients" in report:
        ok = ok and report["distinct_recipients"] == report["at_graph_api"] == args.contacts
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
