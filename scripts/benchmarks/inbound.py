"""P1: inbound throughput. Contacts wait in a 3-node flow (ask -> tag -> thanks); a real
``konvo serve`` receives one signed text webhook per contact and must send every "thanks" to the
loopback Graph API fake and commit every run as completed.

Measured: webhooks/s from the first POST until the fake has all outbound requests and no run is
left waiting or holding an outbox. Reference, in the same run and store: raw compare-and-set
``replace_one`` with a version filter on cloned contact documents, same driver and concurrency,
in a collection with the contacts collection's indexes (the store maintains each index on every
write, so that is the store's own limit for a contact commit). The rate without any secondary
index is printed in the notes too.
``KONVO_BENCH_PROFILE=path`` runs the server under cProfile and writes its stats there.
"""

from __future__ import annotations

import asyncio
import copy
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from scripts.benchmarks import harness, served
from scripts.benchmarks.report import Row
from server.config import Settings
from server.identity import Identities
from server.ids import new_id
from server.operations import catalog as catalog_ops
from server.operations import contacts as contact_ops
from server.runtime import Runtime
from server.store.database import CLIENT_OPTIONS, INDEXES
from tests.support.graph_api_fake import GraphApiFake, ThreadedGraphApiFake

FLOW = {
    "name": "Inbound bench",
    "start": "ask",
    "nodes": [
        {"id": "ask", "type": "message", "text": "¿Te interesa la oferta?", "on_reply": "save"},
        {"id": "save", "type": "tag", "add": ["answered"], "next": "thanks"},
        {"id": "thanks", "type": "message", "text": "¡Gracias!", "next": None},
    ],
}
TARGET_RATIO = 0.5
DONE = {"runs.status": "waiting"}

# P1's measured webhooks/s, for P3 (half of P1's load) when both run in one invocation.
last_rate: float | None = None


@contextmanager
def graph_fake() -> Iterator[GraphApiFake]:
    threaded = ThreadedGraphApiFake(validate=False)  # request validation costs the bench, not the server
    fake = threaded.start()
    try:
        yield fake
    finally:
        threaded.stop()


async def seed(settings: Settings, fake: GraphApiFake, count: int, first_index: int = 1) -> dict[str, Any]:
    """Workspace, channel at ``fake``, the published flow, and ``count`` contacts waiting at "ask"."""
    runtime = Runtime(settings.model_copy(update={"start_timer_worker": False}))
    await runtime.start()
    try:
        await harness.workspace(runtime)
        await served.add_channel(runtime, fake.channel_fields())
        await catalog_ops.create_tag(runtime, harness.WORKSPACE, "answered", "support")
        flow_id = await harness.publish(runtime, FLOW)
        await contact_ops.customer_says(runtime, harness.WORKSPACE, harness.phone(0), "hola", None)
        await contact_ops.start_flow(runtime, harness.WORKSPACE, flow_id, harness.phone(0), None)
        contacts = runtime.database.collection("contacts")
        key = await runtime.directory.find(harness.WORKSPACE, Identities(phone=harness.phone(0)))
        assert key is not None
        doc_id = key.doc_id
        deadline = time.monotonic() + 30
        template = await contacts.find_one({"_id": doc_id})
        while template is not None and template.get("outbox") and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # the question is sent after the commit; clone the settled doc
            template = await contacts.find_one({"_id": doc_id})
        assert template is not None and not template.get("outbox"), template
        assert template["runs"][-1]["status"] == "waiting", template["runs"]
        await harness.insert_clones(runtime, template, count, None, first_index=first_index)
        return template
    finally:
        await runtime.stop()


async def raw_cas_rate(
    settings: Settings, template: dict[str, Any], count: int, with_indexes: bool = True
) -> float:
    """Compare-and-set updates/s of cloned contact documents: the store's own limit for P1's writes."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_uri, **CLIENT_OPTIONS)
    try:
        collection = client[settings.mongodb_db]["bench_cas"]
        if with_indexes:
            await collection.create_indexes(INDEXES["contacts"])
        docs = []
        for i in range(count):
            doc = harness.clone_contact(template, i + 1, None)
            doc["version"] = 1
            docs.append(doc)
        for start in range(0, count, 2000):
            await collection.insert_many(docs[start : start + 2000], ordered=False)
        position = iter(docs)

        async def worker() -> int:
            written = 0
            for doc in position:
                updated = copy.copy(doc)
                updated["version"] = 2
                updated["tags"] = [*doc.get("tags", []), "answered"]
                result = await collection.replace_one({"_id": doc["_id"], "version": 1}, updated)
                written += result.modified_count
            return written

        started = time.perf_counter()
        written = sum(await asyncio.gather(*(worker() for _ in range(served.CONCURRENCY))))
        seconds = time.perf_counter() - started
        assert written == count, f"{written} of {count} compare-and-set writes applied"
        await collection.drop()
        return count / seconds
    finally:
        await client.close()


async def wait_done(
    settings: Settings, fake: GraphApiFake, sent_before: int, count: int, template_id: str
) -> None:
    """Until the fake holds ``count`` new sends and no clone waits or holds an unsent outbox."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_uri, **CLIENT_OPTIONS)
    try:
        contacts = client[settings.mongodb_db]["contacts"]
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            if len(fake.requests) - sent_before >= count:
                left = await contacts.count_documents(
                    {"_id": {"$ne": template_id}, "$or": [DONE, {"outbox.0": {"$exists": True}}]}
                )
                if left == 0:
                    return
            await asyncio.sleep(0.02)
        raise TimeoutError(f"only {len(fake.requests) - sent_before} of {count} outbound requests arrived")
    finally:
        await client.close()


async def measure(settings: Settings, count: int, quick: bool) -> Row:
    global last_rate
    profile = os.environ.get("KONVO_BENCH_PROFILE")
    with graph_fake() as fake:
        template = await seed(settings, fake, count)
        reference = await raw_cas_rate(settings, template, count)
        bare = await raw_cas_rate(settings, template, count, with_indexes=False)
        sent_before = len(fake.requests)
        bodies = [
            served.text_webhook(fake.phone_number_id, harness.phone(i), f"wamid.{new_id('b')}")
            for i in range(1, count + 1)
        ]
        with served.konvo_serve(settings, Path(profile) if profile else None) as url:
            async with served.client(url) as http:
                started = time.perf_counter()
                posting = await served.post_all(http, bodies)
                await wait_done(settings, fake, sent_before, count, template["_id"])
                seconds = time.perf_counter() - started
        rejected = [r for r in fake.requests[sent_before:] if r.status != 200]
    rate = count / seconds
    last_rate = rate
    ratio = rate / reference
    return Row(
        key="P1",
        what=f"{count:,} webhooks, 3-node flow, to outbound + committed",
        measured=f"{rate:,.0f} webhooks/s",
        reference=f"{reference:,.0f} raw CAS/s (contacts indexes)",
        target=f">= {TARGET_RATIO:.0%} ({ratio:.0%})",
        passed=None if quick else (ratio >= TARGET_RATIO and not rejected),
        notes=(
            f"POSTs acked at {count / posting:,.0f}/s; {len(rejected)} outbound requests refused; "
            f"raw CAS without secondary indexes {bare:,.0f}/s ({rate / bare:.0%})"
        ),
    )
