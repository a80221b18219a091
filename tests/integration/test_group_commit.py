"""Group commit on the real store: concurrent writes share bulk round trips, yet each caller gets
its own outcome (a lost compare-and-set race, a duplicate insert, a failed write)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo import InsertOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import WriteError
from pymongo.monitoring import CommandFailedEvent, CommandListener, CommandStartedEvent, CommandSucceededEvent

from server.config import Settings
from server.ids import ContactKey, new_id
from server.store.batching import CasBatcher, IdLoader, Outcome, WriteBatcher
from server.store.contacts import ContactRepository, cas_filter, new_contact
from server.store.database import Database


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    assert settings.mongodb_uri
    database = Database(settings.mongodb_uri, settings.mongodb_db)
    await database.ensure_indexes()
    yield database
    await database.close()


def _collection(database: Database) -> AsyncCollection[dict[str, Any]]:
    return database.collection(f"batching_{new_id('t')}")


async def test_concurrent_inserts_share_round_trips_and_report_duplicates_each(database: Database) -> None:
    collection = _collection(database)
    await collection.insert_one({"_id": "taken"})
    batcher = WriteBatcher(collection)
    outcomes = await asyncio.gather(
        *(batcher.write(InsertOne({"_id": f"doc{i}"})) for i in range(200)),
        batcher.write(InsertOne({"_id": "taken"})),
        batcher.write(InsertOne({"_id": "doc7"})),  # the same id twice in one bulk
    )
    assert outcomes[200] is Outcome.DUPLICATE
    assert [outcomes[7], outcomes[201]].count(Outcome.DUPLICATE) == 1
    assert [o for i, o in enumerate(outcomes[:200]) if i != 7] == [Outcome.DONE] * 199
    assert await collection.count_documents({}) == 201


async def test_a_failed_write_fails_only_its_caller(database: Database) -> None:
    collection = _collection(database)
    await collection.insert_many([{"_id": 1, "n": 1}, {"_id": 2, "n": 1}])
    batcher = WriteBatcher(collection)
    good, bad = await asyncio.gather(
        batcher.write(UpdateOne({"_id": 1}, {"$inc": {"n": 1}})),
        batcher.write(UpdateOne({"_id": 2}, {"$inc": {"n": "not a number"}})),
        return_exceptions=True,
    )
    assert good is Outcome.DONE
    assert isinstance(bad, WriteError)
    assert await collection.find_one({"_id": 1}) == {"_id": 1, "n": 2}


async def test_cas_batch_tells_each_writer_whether_its_version_won(database: Database) -> None:
    collection = _collection(database)
    await collection.insert_many([{"_id": i, "version": 1} for i in range(50)])
    batcher = CasBatcher(collection)

    def replace(i: int, expected: int) -> Any:
        document = {"_id": i, "version": expected + 1, "commit_id": new_id("cmt")}
        return batcher.replace({"_id": i, "version": expected}, document)

    # Even ids expect the stored version; odd ids are stale writers that must lose.
    results = await asyncio.gather(*(replace(i, 1 if i % 2 == 0 else 0) for i in range(50)))
    assert results == [i % 2 == 0 for i in range(50)]
    stored = {d["_id"]: d["version"] async for d in collection.find()}
    assert stored == {i: 2 if i % 2 == 0 else 1 for i in range(50)}


async def test_a_refused_replace_fails_only_its_caller_and_the_rest_of_the_bulk_lands(
    database: Database,
) -> None:
    collection = _collection(database)
    await collection.create_index("email", unique=True)
    await collection.insert_many([{"_id": i, "version": 1, "email": f"{i}@shop.example"} for i in range(3)])
    batcher = CasBatcher(collection)

    def replace(i: int, email: str) -> Any:
        document = {"_id": i, "version": 2, "email": email, "commit_id": new_id("cmt")}
        return batcher.replace({"_id": i, "version": 1}, document)

    # The first replace takes the address the third contact holds: the store refuses it, and only it.
    refused, moved, renamed = await asyncio.gather(
        replace(0, "2@shop.example"),
        replace(1, "1@new.example"),
        replace(2, "2@new.example"),
        return_exceptions=True,
    )
    assert isinstance(refused, WriteError)
    assert (moved, renamed) == (True, True)
    stored = {d["_id"]: (d["version"], d["email"]) async for d in collection.find()}
    assert stored == {0: (1, "0@shop.example"), 1: (2, "1@new.example"), 2: (2, "2@new.example")}


async def test_two_writers_of_one_contact_in_one_bulk_exactly_one_wins(database: Database) -> None:
    contacts = ContactRepository(database)
    key = ContactKey(new_id("ws"), "+34600000001")
    document = {**new_contact(key, datetime.now(UTC)), "version": 1}  # as an actor's first commit
    assert await contacts.compare_and_set(dict(document), 0)
    first = {**document, "version": 2, "name": "first"}
    second = {**document, "version": 2, "name": "second"}
    won = await asyncio.gather(contacts.compare_and_set(first, 1), contacts.compare_and_set(second, 1))
    assert sorted(won) == [False, True]
    stored = await contacts.load(key)
    assert stored is not None and stored["name"] == ("first" if won[0] else "second")


async def test_loads_by_id_are_batched_and_not_shared_between_callers(database: Database) -> None:
    collection = _collection(database)
    await collection.insert_many([{"_id": i, "tags": []} for i in range(20)])
    loader = IdLoader(collection)
    found = await asyncio.gather(*(loader.load(i % 10) for i in range(20)), loader.load("missing"))
    assert [d["_id"] for d in found[:20] if d is not None] == [i % 10 for i in range(20)]
    assert found[20] is None
    found[0]["tags"].append("mutated")  # type: ignore[index]
    assert found[10]["tags"] == []  # type: ignore[index]


async def test_a_caller_cancelled_while_its_bulk_is_at_the_store_leaves_the_others_answered(
    database: Database,
) -> None:
    """A cancelled caller's future is already done when its bulk returns: the callers after it
    must still get their answers (an actor's turn cancelled at shutdown must not strand others)."""
    collection = _collection(database)
    await collection.insert_many([{"_id": i, "version": 1} for i in range(3)])
    batcher = CasBatcher(collection)

    def replace(i: int) -> asyncio.Task[bool]:
        document = {"_id": i, "version": 2, "commit_id": new_id("cmt")}
        return asyncio.create_task(batcher.replace({"_id": i, "version": 1}, document))

    cancelled, *others = [replace(i) for i in range(3)]
    # Until the flusher took all three (a few loop iterations; no event marks it, hence the poll).
    while batcher._pending or batcher._flusher is None:  # noqa: ASYNC110
        await asyncio.sleep(0)
    cancelled.cancel()  # while the bulk is at the store (the flusher waits on its round trip)
    assert batcher._flusher is not None
    await batcher._flusher
    await asyncio.sleep(0)  # let the answered callers' tasks take their results
    assert all(task.done() for task in others), "a caller after the cancelled one was never answered"
    assert [task.result() for task in others] == [True, True]
    assert cancelled.cancelled()
    # The cancelled caller's write was already on its way: it landed too (it is not undone).
    assert {d["_id"]: d["version"] async for d in collection.find()} == {0: 2, 1: 2, 2: 2}


async def test_the_compare_and_set_filter_matches_only_the_same_version_under_no_newer_epoch(
    database: Database,
) -> None:
    """``cas_filter`` is spelt for the embedded store's planner; what it matches is the plain rule."""
    collection = _collection(database)
    stored = [
        {"_id": "same", "version": 3},
        {"_id": "older_epoch", "version": 3, "lease_epoch": 4},
        {"_id": "same_epoch", "version": 3, "lease_epoch": 5},
        {"_id": "newer_epoch", "version": 3, "lease_epoch": 6},
        {"_id": "newer", "version": 4},
        {"_id": "older", "version": 2},
        {"_id": "unversioned"},
    ]
    await collection.insert_many(stored)

    async def matched(epoch: int | None) -> list[str]:
        found = []
        for document in stored:
            mine = {"_id": document["_id"], **({"lease_epoch": epoch} if epoch is not None else {})}
            if await collection.find_one(cas_filter(mine, 3)) is not None:
                found.append(document["_id"])
        return found

    assert await matched(None) == ["same", "older_epoch", "same_epoch", "newer_epoch"]
    assert await matched(5) == ["same", "older_epoch", "same_epoch"]


class _BulkCounter(CommandListener):
    """Counts the write commands (bulks) sent to the store."""

    def __init__(self) -> None:
        self.inserts = 0

    def started(self, event: CommandStartedEvent) -> None:
        if event.command_name == "insert":
            self.inserts += 1

    def succeeded(self, event: CommandSucceededEvent) -> None:
        pass

    def failed(self, event: CommandFailedEvent) -> None:
        pass


async def test_a_busy_group_lingers_for_the_writes_that_follow_it(settings: Settings) -> None:
    """Right after a bulk (under load) the next group waits a moment for the turns in flight: the
    write that opens it and those queued meanwhile share one bulk (issue 19: the driver's work is
    per round trip). Before, the opening write went out alone and the others in a bulk of their own."""
    assert settings.mongodb_uri
    bulks = _BulkCounter()
    database = Database(settings.mongodb_uri, settings.mongodb_db, listeners=[bulks])
    try:
        # A long linger, so a stalled machine cannot let the group go before the writes that follow
        # it are queued (the group then waits out the linger: a second).
        batcher = WriteBatcher(_collection(database), linger=1.0)
        together = await asyncio.gather(*(batcher.write(InsertOne({"_id": i})) for i in (-1, 0)))
        assert together == [Outcome.DONE] * 2 and bulks.inserts == 1  # one bulk: there is load
        opening = asyncio.create_task(batcher.write(InsertOne({"_id": 1})))
        await asyncio.sleep(0)  # the group's flusher has started and lingers
        await asyncio.sleep(0)
        following = [asyncio.create_task(batcher.write(InsertOne({"_id": i}))) for i in (2, 3)]
        assert await asyncio.gather(opening, *following) == [Outcome.DONE] * 3
        assert bulks.inserts == 2
    finally:
        await database.close()


async def test_lone_writes_do_not_linger(database: Database) -> None:
    """A write with no bulk before it, or after a bulk that carried it alone, goes at once: one
    webhook at a time gains nothing from waiting (no timing is measured: a lingering write here
    would wait an hour)."""
    batcher = WriteBatcher(_collection(database), linger=3600.0)
    for i in range(3):
        assert await asyncio.wait_for(batcher.write(InsertOne({"_id": i})), timeout=60) is Outcome.DONE
