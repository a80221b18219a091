"""Conversation messages in and out; inbound ones double as the durable record of an event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from server.store.database import Database


class MessageRepository:
    def __init__(self, database: Database) -> None:
        self._messages = database.collection("messages")

    async def record_inbound(self, document: dict[str, Any]) -> bool:
        """Store an inbound message; False when this provider id was already stored (a retry)."""
        try:
            await self._messages.insert_one({**document, "direction": "in", "applied": False})
        except DuplicateKeyError:
            return False
        return True

    async def get(self, message_id: str) -> dict[str, Any] | None:
        return await self._messages.find_one({"_id": message_id})

    async def mark_applied(self, message_ids: list[str]) -> None:
        await self._messages.update_many({"_id": {"$in": message_ids}}, {"$set": {"applied": True}})

    async def record_outbound(self, document: dict[str, Any]) -> bool:
        """Store an outbound message once (its id is the outbox id, so redelivery is a no-op)."""
        try:
            await self._messages.insert_one({**document, "direction": "out"})
        except DuplicateKeyError:
            return False
        return True

    async def unapplied_inbound(self, older_than: datetime) -> AsyncIterator[dict[str, Any]]:
        cursor = self._messages.find({"direction": "in", "applied": False, "at": {"$lt": older_than}})
        async for document in cursor:
            yield document

    async def outbound_for(self, workspace_id: str, phone: str, channel: str) -> list[dict[str, Any]]:
        return (
            await self._messages.find(
                {"workspace_id": workspace_id, "phone": phone, "direction": "out", "channel": channel}
            )
            .sort([("at", 1), ("_id", 1)])
            .to_list()
        )
