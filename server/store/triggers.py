"""Trigger definitions (webhook and inbound) and the durable record of accepted webhook requests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from server.secret_box import SecretBox
from server.store.database import Database
from server.store.sealed import open_fields, reseal_fields, seal_fields

Document = dict[str, Any]
SECRET_FIELDS = ("secret",)


class WebhookTriggerRepository:
    """``webhook_triggers``: one per URL; looked up by id alone because the caller is anonymous.

    The secret is sealed in the store; ``find`` (checking a request) opens it, ``get`` and ``list``
    (showing triggers) leave it out: it is shown once, when created or rotated.
    """

    def __init__(self, database: Database, secrets: SecretBox) -> None:
        self._docs = database.collection("webhook_triggers")
        self._workspaces = database.collection("workspaces")
        self._secrets = secrets

    async def insert(self, document: Document) -> Document:
        await self._docs.insert_one(seal_fields(self._secrets, document, SECRET_FIELDS))
        return document

    async def find(self, trigger_id: str) -> Document | None:
        """With its secret, to authenticate a request."""
        found = await self._docs.find_one({"_id": trigger_id})
        return open_fields(self._secrets, found, SECRET_FIELDS)

    async def get(self, workspace_id: str, trigger_id: str) -> Document | None:
        return await self._docs.find_one({"_id": trigger_id, "workspace_id": workspace_id}, {"secret": 0})

    async def list(self, workspace_id: str, flow_id: str | None = None) -> list[Document]:
        query: Document = {"workspace_id": workspace_id}
        if flow_id is not None:
            query["flow_id"] = flow_id
        return await self._docs.find(query, {"secret": 0}).sort("created_at", 1).to_list()

    async def set_secret(self, workspace_id: str, trigger_id: str, secret: str) -> Document | None:
        """Replace the secret (rotation); the trigger without it, or None when there is none."""
        return await self._docs.find_one_and_update(
            {"_id": trigger_id, "workspace_id": workspace_id},
            {"$set": {"secret": self._secrets.seal(secret)}},
            projection={"secret": 0},
            return_document=ReturnDocument.AFTER,
        )

    async def reseal(self) -> tuple[int, int]:
        """Seal plaintext (older) secrets and older-key ones with the current key (start-up)."""
        return await reseal_fields(self._docs, self._secrets, SECRET_FIELDS)

    async def exists_for_flow(self, workspace_id: str, flow_id: str) -> bool:
        return await self._docs.find_one({"workspace_id": workspace_id, "flow_id": flow_id}) is not None

    async def delete(self, workspace_id: str, trigger_id: str) -> bool:
        result = await self._docs.delete_one({"_id": trigger_id, "workspace_id": workspace_id})
        return result.deleted_count == 1

    async def set_signature_scheme(self, workspace_id: str, trigger_id: str, scheme: str) -> Document | None:
        """Change how the trigger's requests are authenticated (``server/triggers/signatures.py``)."""
        return await self._docs.find_one_and_update(
            {"_id": trigger_id, "workspace_id": workspace_id},
            {"$set": {"signature_scheme": scheme, "mapping.signature": scheme}},
            projection={"secret": 0},  # shown only when created or rotated
            return_document=ReturnDocument.AFTER,
        )

    async def set_channel(
        self, workspace_id: str, trigger_id: str, channel_id: str | None
    ) -> Document | None:
        """The number the trigger's runs talk through (None: the flow's, else the default)."""
        return await self._docs.find_one_and_update(
            {"_id": trigger_id, "workspace_id": workspace_id},
            {"$set": {"channel_id": channel_id}},
            projection={"secret": 0},
            return_document=ReturnDocument.AFTER,
        )

    async def workspace_country(self, workspace_id: str) -> str | None:
        """The workspace's default country for national phone numbers in payloads (ISO 3166); set by
        ``server/operations/workspaces.py``."""
        found = await self._workspaces.find_one({"_id": workspace_id}, {"default_country": 1})
        return (found or {}).get("default_country")


class InboundTriggerRepository:
    """``inbound_triggers``: keyword and catch-all triggers of a workspace."""

    def __init__(self, database: Database) -> None:
        self._docs = database.collection("inbound_triggers")

    async def insert(self, document: Document) -> Document:
        await self._docs.insert_one(document)
        return document

    async def get(self, workspace_id: str, trigger_id: str) -> Document | None:
        return await self._docs.find_one({"_id": trigger_id, "workspace_id": workspace_id})

    async def list(self, workspace_id: str) -> list[Document]:
        return (
            await self._docs.find({"workspace_id": workspace_id})
            .sort([("priority", -1), ("created_at", 1)])
            .to_list()
        )

    async def update(self, workspace_id: str, trigger_id: str, changes: Document) -> Document | None:
        return await self._docs.find_one_and_update(
            {"_id": trigger_id, "workspace_id": workspace_id},
            {"$set": changes},
            return_document=ReturnDocument.AFTER,
        )

    async def delete(self, workspace_id: str, trigger_id: str) -> bool:
        result = await self._docs.delete_one({"_id": trigger_id, "workspace_id": workspace_id})
        return result.deleted_count == 1


class HookRequestRepository:
    """``hook_requests``: every accepted webhook request, keyed by trigger + idempotency key.

    The unique ``_id`` is what makes a retried request start one run; ``applied`` says whether its
    contact actor has taken it, so recovery can hand over the ones a crash left behind.
    """

    def __init__(self, database: Database) -> None:
        self._docs = database.collection("hook_requests")

    async def record(self, document: Document) -> tuple[bool, Document]:
        """Store the request; ``(False, stored)`` when this key was already recorded (a retry)."""
        try:
            await self._docs.insert_one({**document, "applied": False})
        except DuplicateKeyError:
            existing = await self._docs.find_one({"_id": document["_id"]})
            if existing is not None:
                return False, existing
            raise
        return True, {**document, "applied": False}

    async def get(self, request_id: str) -> Document | None:
        return await self._docs.find_one({"_id": request_id})

    async def mark_applied(self, request_id: str, run_id: str | None, error: str | None = None) -> None:
        await self._docs.update_one(
            {"_id": request_id}, {"$set": {"applied": True, "run_id": run_id, "error": error}}
        )

    async def unapplied(self, older_than: datetime, limit: int = 1000) -> list[Document]:
        cursor = self._docs.find({"applied": False, "received_at": {"$lt": older_than}}).limit(limit)
        return await cursor.to_list()
