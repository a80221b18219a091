"""Conversation messages in and out; inbound ones double as the durable record of an event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from pymongo import InsertOne, UpdateMany

from server.store.batching import IdLoader, Outcome, WriteBatcher
from server.store.database import Database

# How far an outbound message got; a later one wins and ``failed`` is final.
STATUS_ORDER = ("sent", "delivered", "read", "failed")


class MessageRepository:
    def __init__(self, database: Database) -> None:
        self._messages = database.collection("messages")
        # Group commit: concurrent webhooks and sends share round trips (server/store/batching.py).
        self._writes = WriteBatcher(self._messages)
        self._loads = IdLoader(self._messages)

    async def record_inbound(self, document: dict[str, Any]) -> bool:
        """Store an inbound message; False when this provider id was already stored (a retry)."""
        inserted = await self._writes.write(InsertOne({**document, "direction": "in", "applied": False}))
        return inserted is Outcome.DONE

    async def get(self, message_id: str) -> dict[str, Any] | None:
        return await self._loads.load(message_id)

    async def mark_applied(self, message_ids: list[str]) -> None:
        await self._writes.write(UpdateMany({"_id": {"$in": message_ids}}, {"$set": {"applied": True}}))

    async def record_outbound(self, document: dict[str, Any]) -> bool:
        """Store an outbound message once (its id is the outbox id, so redelivery is a no-op)."""
        return await self._writes.write(InsertOne({**document, "direction": "out"})) is Outcome.DONE

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

    # --- outbound message statuses (provider webhooks and permanent send failures) ---

    async def find_by_provider_id(self, workspace_id: str, provider_id: str) -> dict[str, Any] | None:
        """Our outbound message the provider knows as ``provider_id`` (a wamid for WhatsApp).

        The sandbox's provider id is the message id itself, so both are looked up.
        """
        return await self._messages.find_one(
            {
                "workspace_id": workspace_id,
                "direction": "out",
                "$or": [{"provider_id": provider_id}, {"_id": provider_id}],
            }
        )

    async def apply_status(
        self,
        message_id: str,
        status: str,
        at: datetime,
        *,
        pricing: dict[str, Any] | None = None,
        conversation: dict[str, Any] | None = None,
        error_code: str | None = None,
        error: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Keep every status's time, and as ``status`` the furthest one (``STATUS_ORDER``).

        Statuses arrive out of order; a lower one never replaces a higher one, and nothing
        replaces ``failed``. Two single-document updates, each idempotent.
        """
        changes: dict[str, Any] = {f"statuses.{status}": at, **(extra or {})}
        if pricing is not None:
            changes["pricing"] = pricing
        if conversation is not None:
            changes["conversation"] = conversation
        if error_code is not None or error is not None:
            changes["error_code"] = error_code
            changes["error"] = error
        await self._messages.update_one({"_id": message_id}, {"$set": changes})
        if status in STATUS_ORDER:
            at_least = list(STATUS_ORDER[STATUS_ORDER.index(status) :])
            await self._messages.update_one(
                {"_id": message_id, "status": {"$nin": at_least}}, {"$set": {"status": status}}
            )

    async def record_send_failure(
        self, message: dict[str, Any], error_code: str | None, error: str | None, at: datetime
    ) -> None:
        """Mark an outbound message failed for good, creating its record if the channel left none."""
        defaults = {k: v for k, v in message.items() if k not in ("_id", "status", "error_code", "error")}
        await self._messages.update_one(
            {"_id": message["_id"]},
            {
                "$set": {"status": "failed", "error_code": error_code, "error": error, "statuses.failed": at},
                "$setOnInsert": {**defaults, "direction": "out"},
            },
            upsert=True,
        )

    async def conversation(
        self, workspace_id: str, phone: str, limit: int, before: tuple[datetime, str] | None = None
    ) -> list[dict[str, Any]]:
        """The latest ``limit`` messages in and out with ``phone`` (older than ``before``), oldest first."""
        query: dict[str, Any] = {"workspace_id": workspace_id, "phone": phone}
        if before is not None:
            at, message_id = before
            query["$or"] = [{"at": {"$lt": at}}, {"at": at, "_id": {"$lt": message_id}}]
        found = await self._messages.find(query).sort([("at", -1), ("_id", -1)]).limit(limit).to_list()
        return found[::-1]
