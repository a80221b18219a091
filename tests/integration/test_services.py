"""The session fixtures give a working store and Redis and a database per test."""

from __future__ import annotations

import redis.asyncio as aioredis
from pymongo import AsyncMongoClient

from server.config import Settings


async def test_store_and_redis_answer(settings: Settings) -> None:
    assert settings.mongodb_uri and settings.redis_url
    assert settings.mongodb_db.startswith("t_")
    mongo: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(settings.mongodb_uri)
    try:
        collection = mongo[settings.mongodb_db]["probe"]
        await collection.insert_one({"_id": 1})
        assert await collection.count_documents({}) == 1
    finally:
        await mongo.close()
    client = aioredis.from_url(settings.redis_url)
    try:
        assert await client.ping()
    finally:
        await client.aclose()
