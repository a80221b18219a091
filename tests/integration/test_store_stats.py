"""Store work counted from the driver's command monitoring (``KONVO_STORE_STATS``), on the real store:
each command by name, and only the documents the store really inserted, changed or deleted."""

from __future__ import annotations

import httpx
import pytest
from pymongo import DeleteOne, InsertOne, UpdateOne

from server.config import Settings
from server.runtime import Runtime
from server.store.database import Database
from server.web.app import create_app


def _metrics(text: str) -> dict[str, float]:
    return {
        name: float(value)
        for name, _, value in (line.rpartition(" ") for line in text.splitlines() if not line.startswith("#"))
    }


async def test_commands_are_counted_by_name_and_documents_by_what_the_store_wrote(counted: Database) -> None:
    stats = counted.stats
    assert stats is not None
    docs = counted.collection("stats_docs")
    await docs.insert_many([{"_id": i, "n": 0} for i in range(5)])
    await docs.bulk_write(
        [
            InsertOne({"_id": 10, "n": 0}),
            UpdateOne({"_id": 1}, {"$set": {"n": 1}}),
            UpdateOne({"_id": 2}, {"$set": {"n": 0}}),  # matches, changes nothing: not written
            UpdateOne({"_id": 99}, {"$set": {"n": 1}}),  # matches nothing
            UpdateOne({"_id": 100}, {"$set": {"n": 1}}, upsert=True),
            DeleteOne({"_id": 3}),
        ],
        ordered=False,
    )
    await docs.find_one({"_id": 1})
    await docs.find_one_and_update({"_id": 4}, {"$set": {"n": 4}})
    await docs.find_one_and_update({"_id": 98}, {"$set": {"n": 4}})  # nothing found

    assert stats.commands["insert"] == 2
    assert stats.commands["update"] == 1
    assert stats.commands["delete"] == 1
    assert stats.commands["find"] == 1
    assert stats.commands["findAndModify"] == 2
    # 5 + 1 inserted, 1 changed + 1 upserted, 1 deleted, 1 found and changed
    assert stats.documents_written == 10
    assert stats.written_by_collection == {"stats_docs": 10}
    assert stats.failures == 0


async def test_a_failed_command_is_counted_and_writes_nothing(counted: Database) -> None:
    stats = counted.stats
    assert stats is not None
    with pytest.raises(Exception, match="no such command"):
        await counted.db.command("noSuchCommand")
    assert stats.commands["noSuchCommand"] == 1
    assert stats.failures == 1
    assert stats.documents_written == 0


async def test_metrics_expose_the_counts_only_when_enabled(settings: Settings) -> None:
    for enabled in (True, False):
        runtime = Runtime(settings.model_copy(update={"store_stats": enabled, "start_timer_worker": False}))
        await runtime.start()
        try:
            await runtime.database.collection("stats_docs").insert_many([{"n": i} for i in range(3)])
            app = create_app(runtime.settings, runtime=runtime)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://konvo.test") as http:
                text = (await http.get("/metrics")).text
        finally:
            await runtime.stop()
        series = _metrics(text)
        if not enabled:
            assert runtime.database.stats is None
            assert not any(name.startswith("konvo_store_") for name in series), text
            continue
        assert runtime.database.stats is not None
        assert series['konvo_store_commands_total{command="insert"}'] >= 1, text
        assert series["konvo_store_documents_written_total"] >= 3, text
        assert series['konvo_store_documents_written_by_collection_total{collection="stats_docs"}'] == 3, text
        assert series["konvo_store_command_failures_total"] == 0, text
        assert text.count("# TYPE konvo_store_commands_total counter") == 1, text
