"""Benchmark: CPU of this process per outbound message, ``GraphClient.send_message`` against bare aiohttp.

Both send the same text message to the loopback Graph API fake (its own process), 16 at a time,
on uvloop as ``konvo serve`` runs; CPU is ``getrusage`` of this process over each round (user +
system), rounds alternate between the two so a loaded machine weighs on both alike. What the
product path adds over bare aiohttp is httpx's API, the egress policy and the pinned transport
(issue 19: the whole outbound budget per message is 0.7 ms). No throughput limiter: that has its
own bench (``limiter.py``).

    .venv/bin/python scripts/benchmarks/send_path.py                 # 4 rounds of 2,000 each
    .venv/bin/python scripts/benchmarks/send_path.py --sends 500 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from scripts.benchmarks.graph_fake import GraphFakeProcess  # noqa: E402
from server.channels.whatsapp.client import GraphClient, RetryPolicy  # noqa: E402
from server.dev.embedded import DEV_EGRESS_ALLOW  # noqa: E402
from server.egress import EgressAllowList, EgressPolicy  # noqa: E402

CONCURRENCY = 16
WARMUP = 200

Send = Callable[[int], Awaitable[None]]


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _body(index: int) -> dict[str, Any]:
    to = f"3460{index:07d}"
    return {"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": "hola"}}


async def _cpu_ms_per_send(send: Send, count: int) -> float:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(index: int) -> None:
        async with gate:
            await send(index)

    await asyncio.gather(*(one(i) for i in range(WARMUP)))  # connections open, caches filled
    before = _cpu_seconds()
    await asyncio.gather(*(one(i) for i in range(count)))
    return (_cpu_seconds() - before) / count * 1000


async def measure(fields: dict[str, Any], count: int, rounds: int) -> dict[str, list[float]]:
    channel = {**fields, "workspace_id": "bench", "throughput_per_second": 1000}
    graph = GraphClient(limiter=None, egress=EgressPolicy(EgressAllowList.parse(DEV_EGRESS_ALLOW)))
    graph.policy = RetryPolicy()
    url = f"{fields['base_url']}/{fields['api_version']}/{fields['phone_number_id']}/messages"
    scheme, token = fields.get("auth_scheme"), fields["access_token"]
    headers = {fields["auth_header"]: f"{scheme} {token}" if scheme else token}
    session = aiohttp.ClientSession()

    async def bare(index: int) -> None:
        async with session.post(url, json=_body(index), headers=headers) as response:
            await response.read()
            assert response.status == 200, response.status

    async def product(index: int) -> None:
        result = await graph.send_message(channel, _body(index))
        assert result.ok, result

    figures: dict[str, list[float]] = {"bare aiohttp": [], "GraphClient.send_message": []}
    try:
        for _ in range(rounds):
            figures["bare aiohttp"].append(await _cpu_ms_per_send(bare, count))
            figures["GraphClient.send_message"].append(await _cpu_ms_per_send(product, count))
    finally:
        await session.close()
        await graph.close()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=2000, help="messages per round and client")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    with GraphFakeProcess() as fake:
        try:
            import uvloop

            runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
        except ImportError:  # pragma: no cover - konvo serve then runs on asyncio's loop too
            runner = asyncio.Runner()
        with runner:
            figures = runner.run(measure(fake.channel_fields(), args.sends, args.rounds))
    rounds = f"{args.rounds} rounds of {args.sends:,}, {CONCURRENCY} at a time"
    print(f"CPU ms per send in this process ({rounds})")
    for name, values in figures.items():
        ordered = sorted(values)
        print(f"  {name:26} min {ordered[0]:.3f}  median {ordered[len(ordered) // 2]:.3f}")
    print(f"  load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
