"""The embedded store runs standalone: it keeps no oplog (a second copy of every write, for change
streams the server does not use), while sessions and multi-document transactions still work.
Replica-set behaviour is tested on a store started as one (test_mongodb_replica_set.py)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from server.config import Settings

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("KONVO_TEST_MONGODB_URI")), reason="an external store is under test"
)


async def test_the_embedded_store_keeps_no_oplog_and_still_commits_transactions(settings: Settings) -> None:
    assert settings.mongodb_uri is not None
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_uri)
    try:
        hello = await client.admin.command("hello")
        assert "setName" not in hello
        oplog = client["local"]["oplog.rs"]
        before = await oplog.count_documents({})
        collection = client[settings.mongodb_db]["probe"]
        async with client.start_session() as session:
            async with await session.start_transaction():
                await collection.insert_one({"_id": "a"}, session=session)
                await collection.insert_one({"_id": "b"}, session=session)
        assert sorted([d["_id"] async for d in collection.find()]) == ["a", "b"]
        assert await oplog.count_documents({}) == before == 0
    finally:
        await client.close()
