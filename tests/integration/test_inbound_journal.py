"""Stored-but-unapplied inbound messages are journalled a group at a time, not marked one by one.

Issue 19: a mark per message (``inbound_pending``: an insert at the webhook, a delete once applied)
was two of the embedded store's ~8 documents per webhook. Messages stored together now share one
journal entry (``server/store/inbound_journal.py``), deleted once all of them were applied. The
guarantee stays: a crash at any point leaves the entry, and recovery applies the message once.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from server.actors.events import InboundMessage
from server.config import Settings
from server.ids import new_id
from server.operations.channel_inbound import inbound_record
from server.runtime import Runtime
from server.store.database import Database
from server.store.legacy_ids import LegacyProviderIds
from server.store.messages import MessageRepository
from tests.integration.conftest import WORKSPACE
from tests.integration.test_read_model_writes import statements
from tests.integration.test_turn_effects import PHONE, commit_losing_effects, start_waiting_run
from tests.support.clock import ShiftedClock
from tests.support.contacts import key_of
from tests.support.graphql import GraphQLClient, eventually

JOURNAL = "inbound_journal"


@pytest.fixture
def fast_settings(fast_settings: Settings) -> Settings:
    return fast_settings.model_copy(update={"store_stats": True})


def record_at(at: datetime, contact_id: str | None = None, text: str = "hola") -> dict[str, Any]:
    return inbound_record(
        WORKSPACE,
        new_id("wamid"),
        phone=PHONE,
        contact_id=contact_id,
        channel="whatsapp",
        text=text,
        at=at,
    )


def written(database: Database, collection: str) -> int:
    assert database.stats is not None
    return database.stats.written_by_collection[collection]


async def test_messages_stored_together_share_a_journal_entry_instead_of_a_mark_each(
    counted: Database,
) -> None:
    messages = MessageRepository(counted, LegacyProviderIds(counted))
    records = [record_at(datetime.now(UTC)) for _ in range(20)]
    assert await asyncio.gather(*(messages.record_inbound(r) for r in records)) == [None] * 20
    assert not any([await messages.applied(r["_id"]) for r in records])
    # one entry per group stored together (at most: the first alone, the rest behind it), no marks
    entries = written(counted, JOURNAL)
    assert statements(counted, JOURNAL) == {"insert": entries} and entries <= 2
    assert statements(counted, "inbound_pending") == {}

    await asyncio.gather(*(messages.mark_applied([r["_id"]]) for r in records))
    assert all([await messages.applied(r["_id"]) for r in records])
    assert written(counted, JOURNAL) == 2 * entries  # each entry inserted and deleted: <= 0.2 per message
    assert await counted.collection(JOURNAL).count_documents({}) == 0


async def test_a_group_from_two_workspaces_writes_one_entry_per_workspace(counted: Database) -> None:
    """Every document names its workspace (deleting a workspace relies on it)."""
    messages = MessageRepository(counted, LegacyProviderIds(counted))
    now = datetime.now(UTC)
    ours = [record_at(now) for _ in range(3)]
    theirs = [
        inbound_record("ws_other", new_id("wamid"), channel="whatsapp", text="hi", at=now) for _ in range(3)
    ]
    await asyncio.gather(*(messages.record_inbound(r) for r in [*ours, *theirs]))
    entries = await counted.collection(JOURNAL).find().to_list()
    by_workspace: dict[str, set[str]] = {}
    for entry in entries:
        by_workspace.setdefault(entry["workspace_id"], set()).update(entry["ids"])
    assert by_workspace == {WORKSPACE: {r["_id"] for r in ours}, "ws_other": {r["_id"] for r in theirs}}


async def test_a_turn_that_ran_elsewhere_settles_the_entry_when_it_answers(counted: Database) -> None:
    messages = MessageRepository(counted, LegacyProviderIds(counted))
    applied, failed = record_at(datetime.now(UTC)), record_at(datetime.now(UTC))
    for record in (applied, failed):
        assert await messages.record_inbound(record) is None
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[object] = loop.create_future()
    refused: asyncio.Future[object] = loop.create_future()
    messages.settle_when_applied(applied["_id"], answered)
    messages.settle_when_applied(failed["_id"], refused)
    refused.set_exception(RuntimeError("the owner gave up"))
    answered.set_result(object())
    await eventually(lambda: messages.applied(applied["_id"]), bool)
    assert not await messages.applied(failed["_id"])  # left to recovery


async def test_recovery_narrows_a_partly_applied_entry_and_tells_only_the_rest(counted: Database) -> None:
    messages = MessageRepository(counted, LegacyProviderIds(counted))
    now = datetime.now(UTC)
    first, second, third = (record_at(now) for _ in range(3))
    await asyncio.gather(*(messages.record_inbound(r) for r in (first, second, third)))
    await messages.mark_applied([first["_id"], second["_id"]])  # two of the three applied
    told = [m["_id"] async for m in messages.unapplied_inbound(now + timedelta(minutes=1))]
    assert told == [third["_id"]]
    [entry] = await counted.collection(JOURNAL).find().to_list()
    assert entry["ids"] == [third["_id"]]  # another process's recovery will not tell the second again


async def stored_by_a_process_that_crashed(runtime: Runtime, text: str) -> dict[str, Any]:
    """The webhook's store step in another process (its memory then lost): message and entry stored,
    nobody told."""
    elsewhere = MessageRepository(runtime.database, LegacyProviderIds(runtime.database))
    contact_id = (await key_of(runtime, WORKSPACE, PHONE)).doc_id
    record = record_at(runtime.clock.now(), contact_id, text)
    assert await elsewhere.record_inbound(record) is None
    return record


async def recovered_after_grace(runtime: Runtime, clock: ShiftedClock) -> None:
    clock.advance(timedelta(seconds=runtime.settings.inbound_grace_seconds + 1))
    await runtime.recover_now(scan_contacts=False)


async def applied_once(runtime: Runtime, record: dict[str, Any]) -> None:
    async def applied_events() -> list[str]:
        contact = await runtime.contacts.load(await key_of(runtime, WORKSPACE, PHONE))
        assert contact is not None
        return list(contact["applied_events"])

    events = await eventually(applied_events, lambda events: record["_id"] in events)
    assert events.count(record["_id"]) == 1
    await eventually(lambda: runtime.messages.applied(record["_id"]), bool)
    assert await runtime.database.collection(JOURNAL).count_documents({}) == 0


async def test_a_crash_between_storing_a_message_and_its_turn_is_applied_once_by_recovery(
    runtime: Runtime, gql: GraphQLClient, clock: ShiftedClock
) -> None:
    run_id = await start_waiting_run(runtime, gql)
    record = await stored_by_a_process_that_crashed(runtime, "Sí, por favor")
    assert not await runtime.messages.applied(record["_id"])  # its entry is in the store, not in memory
    await recovered_after_grace(runtime, clock)
    await applied_once(runtime, record)
    run = await eventually(lambda: runtime.runs.get(WORKSPACE, run_id), lambda r: r is not None)
    assert run is not None and run["status"] == "completed"

    await recovered_after_grace(runtime, clock)  # nothing is left to tell
    await applied_once(runtime, record)


async def test_a_crash_between_the_commit_and_its_effects_redoes_them_once_by_recovery(
    runtime: Runtime, gql: GraphQLClient, clock: ShiftedClock
) -> None:
    run_id = await start_waiting_run(runtime, gql)
    record = await stored_by_a_process_that_crashed(runtime, "No, gracias")
    await commit_losing_effects(runtime, InboundMessage.from_record(record))  # committed, effects cut
    projected = await runtime.runs.get(WORKSPACE, run_id)
    assert projected is not None and projected["status"] == "waiting"
    assert not await runtime.messages.applied(record["_id"])

    await recovered_after_grace(runtime, clock)
    await applied_once(runtime, record)
    await eventually(
        lambda: runtime.runs.get(WORKSPACE, run_id), lambda r: r is not None and r["status"] == "completed"
    )
