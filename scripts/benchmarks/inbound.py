"""P1: inbound throughput. Contacts wait in a 3-node flow (ask -> tag -> thanks); a real
``konvo serve`` receives one signed text webhook per contact and must send every "thanks" to the
loopback Graph API fake and commit every run as completed.

Measured: webhooks/s from the first POST until the fake has all outbound requests, no run is
left waiting and every inbound message is marked applied, and what that
window cost per webhook (CPU of each process, the server's store work: ``costs.py``). The load
generator and the Graph API fake run in processes of their own (``loadgen.py``,
``graph_fake.py``); the window opens once the server listens and has finished its start-up
work. Reference, in the same run and store: raw compare-and-set ``replace_one`` with a version
filter on cloned contact documents, same driver and concurrency, in a collection with the
contacts collection's indexes (the store maintains each index on every
write, so that is the store's own limit for a contact commit). The rate without any secondary
index is printed in the notes too.
``KONVO_BENCH_PROFILE=path`` runs the server under cProfile and writes its stats there;
``KONVO_BENCH_SAMPLE=path`` samples its stacks in CPU time instead (collapsed stacks, ``served.py``).
"""

from __future__ import annotations

import asyncio
import copy
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from scripts.benchmarks import harness, served
from scripts.benchmarks.costs import CostWindow, EventCosts, StoreWork
from scripts.benchmarks.graph_fake import GraphFakeProcess
from scripts.benchmarks.loadgen import LoadGenerator
from scripts.benchmarks.proc_cpu import CpuUsage, wait_quiet
from scripts.benchmarks.report import Row
from server.config import Settings
from server.identity import Identities
from server.ids import new_id
from server.operations import contacts as contact_ops
from server.operations import sending as sending_ops
from server.operations import tags as tag_ops
from server.runtime import Runtime
from server.store.database import CLIENT_OPTIONS, INDEXES

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
TARGETS = {"server": 1.0, "store": 2.0}  # CPU ms per webhook (issue 19)
DONE_TIMEOUT = 900.0
STALLED_SECONDS = 20.0
APPLIED = "every inbound message applied"
DONE = {"runs.status": "waiting"}

# P1's measured webhooks/s, for P3 (half of P1's load) when both run in one invocation.
last_rate: float | None = None


@contextmanager
def graph_fake() -> Iterator[GraphFakeProcess]:
    # Request validation would cost the fake's CPU on the cores the server runs on: it is tested
    # elsewhere (tests/integration/test_whatsapp_outbound.py), not here.
    with GraphFakeProcess(validate=False) as fake:
        yield fake


async def seed(
    settings: Settings, fake: GraphFakeProcess, count: int, first_index: int = 1
) -> dict[str, Any]:
    """Workspace, channel at ``fake``, the published flow, and ``count`` contacts waiting at "ask"."""
    runtime = Runtime(settings.model_copy(update={"start_timer_worker": False}))
    await runtime.start()
    try:
        await harness.workspace(runtime)
        # One outbound message per webhook, as issue 19 defines P1: the typing indicator's read
        # receipt (on by default) would add a Graph API call per answered message.
        await sending_ops.update_sending_settings(runtime.services, harness.WORKSPACE, None, False)
        await served.add_channel(runtime, fake.channel_fields())
        await tag_ops.create_tag(runtime.services, harness.WORKSPACE, "answered", "support")
        flow_id = await harness.publish(runtime, FLOW)
        await contact_ops.customer_says(runtime.services, harness.WORKSPACE, harness.phone(0), "hola", None)
        await contact_ops.start_flow(runtime.services, harness.WORKSPACE, flow_id, harness.phone(0), None)
        contacts = runtime.database.collection("contacts")
        key = await runtime.directory.find(harness.WORKSPACE, Identities(phone=harness.phone(0)))
        assert key is not None
        doc_id = key.doc_id
        deadline = time.monotonic() + 30
        template = await contacts.find_one({"_id": doc_id})
        while template is not None and not await _sent(runtime, template) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # the question is sent after the commit; clone the settled doc
            template = await contacts.find_one({"_id": doc_id})
        assert template is not None and await _sent(runtime, template), template
        template["outbox"] = []  # sent: the stored copy keeps it until the next commit (effects.py)
        assert template["runs"][-1]["status"] == "waiting", template["runs"]
        await harness.insert_clones(runtime, template, count, None, first_index=first_index)
        return template
    finally:
        await runtime.stop()


async def _sent(runtime: Runtime, contact: dict[str, Any]) -> bool:
    """Whether every message in the contact's stored outbox was sent (recorded with its wamid)."""
    ids = [message["id"] for message in contact.get("outbox", [])]
    return not ids or await runtime.messages.sent_messages(ids) == set(ids)


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


@dataclass(frozen=True)
class Done:
    """How a row's webhooks ended: its window's figures (when it had one) and the inbound messages
    never marked applied (their turns committed, but the effects after the commit were cut short)."""

    usage: CpuUsage | None
    work: StoreWork | None
    unapplied: int


async def wait_done(
    settings: Settings,
    fake: GraphFakeProcess,
    requests: int,
    template_id: str,
    window: CostWindow | None = None,
    phones: list[str] | None = None,
) -> Done:
    """Until the fake holds ``requests`` requests in all, no clone waits, and every inbound message
    is marked applied (after its turn's sends and read models, its run projection): ``window``
    holds all the work of each webhook but its last pub/sub notices.

    A pending message that stays listed for ``STALLED_SECONDS`` is left and counted: the server
    lost the tail of that turn (seen when a lease loss cancelled committed turns). The window is
    then closed as of the last one that went. ``phones``: only these contacts are waited for
    (contacts seeded for a later part are waiting too).
    """
    deadline = time.monotonic() + DONE_TIMEOUT
    received = await fake.wait_requests(requests, DONE_TIMEOUT)
    if received < requests:
        raise TimeoutError(f"only {received} of {requests} outbound requests arrived")
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_uri, **CLIENT_OPTIONS)
    try:
        database = client[settings.mongodb_db]
        undone: dict[str, Any] = {"_id": {"$ne": template_id}, **DONE}
        if phones is not None:
            undone["phone"] = {"$in": phones}
        while await database["contacts"].count_documents(undone):
            if time.monotonic() > deadline:
                raise TimeoutError("contacts still wait")
            await asyncio.sleep(0.05)
        usage, work = window.close() if window is not None else (None, None)
        pending = await pending_inbound(database)
        progress = time.monotonic()
        while pending and time.monotonic() - progress < STALLED_SECONDS and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            now_pending = await pending_inbound(database)
            if now_pending < pending:
                pending, progress = now_pending, time.monotonic()
                usage, work = window.close() if window is not None else (None, None)
        return Done(usage, work, pending)
    finally:
        await client.close()


async def pending_inbound(database: Any) -> int:
    """Inbound messages still waiting to be marked applied: those journal entries list (and marks
    of an older version, if the store has any)."""
    listed = [len(entry["ids"]) async for entry in database["inbound_journal"].find({}, {"ids": 1})]
    marks: int = await database["inbound_pending"].count_documents({})
    return marks + sum(listed)


def webhooks(
    fake: GraphFakeProcess, first: int, count: int, prefix: str
) -> list[tuple[dict[str, str], bytes]]:
    """Signed text webhooks from phone(first) .. phone(first + count - 1), one each."""
    return served.signed(
        [
            served.text_webhook(fake.phone_number_id, harness.phone(i), f"wamid.{new_id(prefix)}")
            for i in range(first, first + count)
        ]
    )


async def measure(services: harness.Services, count: int, quick: bool) -> Row:
    global last_rate
    settings = services.settings
    profile = os.environ.get("KONVO_BENCH_PROFILE")
    sample = os.environ.get("KONVO_BENCH_SAMPLE")
    with graph_fake() as fake:
        template = await seed(settings, fake, count)
        reference = await raw_cas_rate(settings, template, count)
        bare = await raw_cas_rate(settings, template, count, with_indexes=False)
        sent_before = await fake.received()
        requests = webhooks(fake, 1, count, "b")
        with (
            served.konvo_serve(
                settings, Path(profile) if profile else None, Path(sample) if sample else None
            ) as server,
            LoadGenerator(served.webhook_url(server.url), requests, served.CONCURRENCY) as load,
        ):
            processes = served.processes(services, server, load, fake)
            await wait_quiet({"server": server.pid, "store": services.store_pid})
            window = CostWindow(processes, server.store_work)
            window.open()
            server.profile_window()
            posted = await load.run()
            served.check_answers(posted)
            done = await wait_done(settings, fake, sent_before + count, template["_id"], window)
        rejected = [entry for entry in await fake.log(sent_before) if entry[2] != 200]
    usage, work = done.usage, done.work
    assert usage is not None
    seconds = usage.wall_seconds
    rate = count / seconds
    last_rate = rate
    ratio = rate / reference
    return Row(
        key="P1",
        what=f"{count:,} webhooks, 3-node flow, to outbound + committed",
        measured=f"{rate:,.0f} webhooks/s",
        reference=f"{reference:,.0f} raw CAS/s (contacts indexes)",
        target=f">= {TARGET_RATIO:.0%} ({ratio:.0%})",
        passed=None if quick else (ratio >= TARGET_RATIO and not rejected and not done.unapplied),
        notes=(
            f"POSTs acked at {count / posted.seconds:,.0f}/s; {len(rejected)} outbound requests refused; "
            f"raw CAS without secondary indexes {bare:,.0f}/s ({rate / bare:.0%})"
            + unapplied_note(done.unapplied)
        ),
        costs=[
            EventCosts(
                "P1", count, "webhook", usage, work, TARGETS, {APPLIED: not done.unapplied}, quick=quick
            )
        ],
    )


def unapplied_note(unapplied: int) -> str:
    if not unapplied:
        return ""
    return (
        f"; {unapplied:,} inbound messages never marked applied (their turns committed and sent, "
        f"then lost their last effects; the server log says why)"
    )
