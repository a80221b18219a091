"""The store stops under webhook load: webhooks answer 503 (never 200 for what was not stored, never
500); once the store is back the server recovers by itself and every acknowledged message is applied.
Runs on a store of its own so the session's store is not disturbed. The server waits up to 5 s
(its serverSelectionTimeoutMS) for the store before answering 503, so a shorter outage only delays
the 200s: the short variant stops the store for 7 s to see the 503s."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from server.dev.embedded import ManagedProcess, mongodb_uri_for
from server.ids import scoped_id
from tests.reliability.conftest import WORKSPACE
from tests.reliability.webhooks import CHANNEL_ID, add_channel, inbound_text
from tests.support.graph_api_fake import GraphApiFake
from tests.support.timing import until
from tests.support.whatsapp_webhooks import WebhookClient

pytestmark = pytest.mark.e2e


async def outage(cluster_factory: Any, own_store: ManagedProcess, down_seconds: float, senders: int) -> None:
    uri = mongodb_uri_for(own_store.port)
    cluster = cluster_factory(mongodb_uri=uri)
    cluster.start()
    graph = await GraphApiFake().start()
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, serverSelectionTimeoutMS=20000)
    statuses: Counter[int] = Counter()
    acked: list[tuple[str, str]] = []  # (wamid, phone digits)
    during: Counter[int] = Counter()
    store_down = False
    stop = asyncio.Event()
    try:
        await add_channel(mongo, cluster.db_name, graph)
        async with httpx.AsyncClient(base_url=cluster.url(0), timeout=60) as http:
            hooks = WebhookClient(http, CHANNEL_ID)

            async def sender(n: int) -> None:
                count = 0
                while not stop.is_set():
                    count += 1
                    wa_id = f"346980{n:02d}{count % 50:03d}"  # a possible Spanish mobile
                    wamid, body = inbound_text(wa_id, f"m{count}")
                    try:
                        response = await hooks.post(body)
                    except httpx.HTTPError:
                        statuses[-1] += 1
                        continue
                    statuses[response.status_code] += 1
                    if store_down:
                        during[response.status_code] += 1
                    if response.status_code == 200:
                        acked.append((wamid, wa_id))
                    else:
                        await asyncio.sleep(0.05)

            tasks = [asyncio.create_task(sender(n)) for n in range(senders)]
            await until(lambda: len(acked) >= senders, "every sender's first webhook accepted", 30)
            await asyncio.to_thread(own_store.stop)
            store_down = True
            await asyncio.sleep(down_seconds)
            await asyncio.to_thread(own_store.start)
            store_down = False
            up_at = time.monotonic()
            # Keep sending until the server takes messages again by itself (no restart).
            while True:
                before = len(acked)
                await asyncio.sleep(0.5)
                if len(acked) > before + senders:
                    break
                assert time.monotonic() - up_at < 30, (
                    f"webhooks not accepted again 30 s after the store came back: {statuses}"
                )
            back_in = time.monotonic() - up_at
            stop.set()
            await asyncio.gather(*tasks)

        ids = [scoped_id(WORKSPACE, w) for w, _ in acked]  # inbound ids are scoped by workspace
        settling = time.monotonic()
        deadline = time.monotonic() + 45
        while True:  # every acknowledged message ends in its contact's state
            docs = await mongo[cluster.db_name]["contacts"].find({"workspace_id": WORKSPACE}).to_list()
            in_state = Counter(e for d in docs for e in d.get("applied_events", []))
            missing_state = sum(1 for w in ids if in_state[w] == 0)
            if missing_state == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        settled_in = time.monotonic() - settling
        stored = await mongo[cluster.db_name]["messages"].find({"_id": {"$in": ids}}).to_list()
        pending = await mongo[cluster.db_name]["inbound_pending"].find({"_id": {"$in": ids}}).to_list()
        applied = [m for m in stored if m["_id"] not in {p["_id"] for p in pending}]
        twice = sum(1 for w in ids if in_state[w] > 1)
        print(
            f"\n[store-outage] down={down_seconds}s statuses={dict(statuses)} while_down={dict(during)}"
            f" acked={len(ids)} stored={len(stored)} applied={len(applied)} not_in_state={missing_state}"
            f" applied_twice={twice} all_in_state_after={settled_in:.1f}s back_in={back_in:.1f}s"
            f" (applied = no pending mark left; state = contact applied_events)"
        )
        assert statuses[500] == 0 and during[503] > 0
        assert len(stored) == len(ids), "a 200 was answered for a message that is not stored"
        assert missing_state == 0 and twice == 0
    finally:
        stop.set()
        await mongo.close()
        await graph.stop()


async def test_store_outage_short(cluster_factory: Any, own_store: ManagedProcess) -> None:
    await outage(cluster_factory, own_store, down_seconds=6.0, senders=4)


@pytest.mark.full
@pytest.mark.timeout(600)
async def test_store_outage_full(cluster_factory: Any, own_store: ManagedProcess) -> None:
    await outage(cluster_factory, own_store, down_seconds=10.0, senders=8)
