"""Contact documents: the unit of state and of consistency (one CAS write per actor turn)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from server.ids import ContactKey
from server.store.database import Database


def new_contact(key: ContactKey, now: datetime) -> dict[str, Any]:
    return {
        "_id": key.doc_id,
        "workspace_id": key.workspace_id,
        "phone": key.phone,
        "name": None,
        "tags": [],
        "variables": {},
        "opted_in": False,
        "opt_in": None,
        "assigned_agent": None,
        "last_inbound_at": None,
        "runs": [],
        "timers": [],
        "outbox": [],
        "applied_events": [],
        "version": 0,
        "created_at": now,
        "updated_at": now,
    }


class ContactRepository:
    def __init__(self, database: Database) -> None:
        self._contacts = database.collection("contacts")

    async def load(self, key: ContactKey) -> dict[str, Any] | None:
        return await self._contacts.find_one({"_id": key.doc_id})

    async def get(self, workspace_id: str, contact_id: str) -> dict[str, Any] | None:
        return await self._contacts.find_one({"_id": contact_id, "workspace_id": workspace_id})

    async def compare_and_set(self, document: dict[str, Any], expected_version: int) -> bool:
        """Write ``document`` only if the stored version is still ``expected_version``.

        Version 0 means "not stored yet": the insert fails if another writer created it first.
        """
        if expected_version == 0:
            try:
                await self._contacts.insert_one(document)
            except DuplicateKeyError:
                return False
            return True
        result = await self._contacts.replace_one(
            {"_id": document["_id"], "version": expected_version}, document
        )
        return result.matched_count == 1

    async def pull_outbox(self, doc_id: str, version: int, message_ids: list[str]) -> None:
        """Forget delivered messages without a version bump (only the owning actor writes)."""
        await self._contacts.update_one(
            {"_id": doc_id, "version": version},
            {"$pull": {"outbox": {"id": {"$in": message_ids}}}},
        )

    async def find_run(self, workspace_id: str, run_id: str) -> dict[str, Any] | None:
        return await self._contacts.find_one({"workspace_id": workspace_id, "runs.id": run_id})

    async def with_pending_work(self) -> AsyncIterator[dict[str, Any]]:
        """Contacts holding timers or undelivered messages: what recovery must re-arm."""
        cursor = self._contacts.find(
            {"$or": [{"timers.0": {"$exists": True}}, {"outbox.0": {"$exists": True}}]},
            {"timers": 1, "outbox": 1, "workspace_id": 1, "phone": 1},
        )
        async for document in cursor:
            yield document

    async def keys_with_active_runs(
        self, workspace_id: str, flow_id: str, below_version: int
    ) -> AsyncIterator[str]:
        """Ids of contacts with a run of ``flow_id`` still going on an older version."""
        cursor = self._contacts.find(
            {
                "workspace_id": workspace_id,
                "runs": {
                    "$elemMatch": {
                        "flow_id": flow_id,
                        "version": {"$lt": below_version},
                        "status": {"$in": ["active", "waiting"]},
                    }
                },
            },
            {"_id": 1},
        )
        async for document in cursor:
            yield document["_id"]
