"""The MongoDB connection and the collections' indexes (created idempotently at start-up)."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

INDEXES: dict[str, list[IndexModel]] = {
    "api_keys": [IndexModel([("workspace_id", ASCENDING)])],
    "flows": [IndexModel([("workspace_id", ASCENDING), ("name", ASCENDING)])],
    "flow_versions": [IndexModel([("flow_id", ASCENDING), ("version", ASCENDING)], unique=True)],
    "contacts": [
        IndexModel([("workspace_id", ASCENDING), ("phone", ASCENDING)]),
        IndexModel([("runs.id", ASCENDING)]),
        IndexModel([("timers.due_at", ASCENDING)], sparse=True),
    ],
    "runs": [
        IndexModel([("workspace_id", ASCENDING), ("flow_id", ASCENDING), ("_id", ASCENDING)]),
        IndexModel([("workspace_id", ASCENDING), ("contact_id", ASCENDING), ("_id", ASCENDING)]),
    ],
    "messages": [
        IndexModel([("workspace_id", ASCENDING), ("phone", ASCENDING), ("at", ASCENDING)]),
        IndexModel([("direction", ASCENDING), ("applied", ASCENDING)], sparse=True),
    ],
    # The workspace catalog (server/store/catalog.py): unique on each entry's natural key.
    "tags": [IndexModel([("workspace_id", ASCENDING), ("name", ASCENDING)], unique=True)],
    "fields": [IndexModel([("workspace_id", ASCENDING), ("name", ASCENDING)], unique=True)],
    "agents": [IndexModel([("workspace_id", ASCENDING), ("email", ASCENDING)], unique=True)],
    "channels": [
        IndexModel([("workspace_id", ASCENDING)]),
        IndexModel([("phone_number_id", ASCENDING)], unique=True),
    ],
    "templates": [
        IndexModel([("workspace_id", ASCENDING), ("name", ASCENDING), ("language", ASCENDING)], unique=True)
    ],
}


class Database:
    """Owns the async client; repositories receive collections from it."""

    def __init__(self, uri: str, name: str) -> None:
        self.client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            uri, tz_aware=True, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000
        )
        self.db: AsyncDatabase[dict[str, Any]] = self.client[name]

    def collection(self, name: str) -> AsyncCollection[dict[str, Any]]:
        return self.db[name]

    async def ensure_indexes(self) -> None:
        for name, indexes in INDEXES.items():
            await self.db[name].create_indexes(indexes)

    async def ping(self) -> bool:
        await self.db.command("ping")
        return True

    async def close(self) -> None:
        await self.client.close()
