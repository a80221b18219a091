"""Workspaces and their API keys.

A workspace's ``status`` is ``active`` (also when missing: documents made before operators could
disable one), ``disabled`` or ``deleting`` (``server/operations/workspace_admin.py``).

A key is stored only as its SHA-256 hash (the document ``_id``), so a database leak yields no
usable key; the plain key is returned once, at creation. Each key also has a public ``key_id``
used to list and revoke it. Keys are 256-bit random, so an unsalted fast hash is enough.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Any

from pymongo import ReturnDocument

from server.ids import new_id
from server.store.batching import IdLoader
from server.store.database import Database

KEY_PREFIX = "konvo_"
# An API key's role: ADMIN may do everything, AGENT works the inbox (server/graphql/permissions.py).
ADMIN = "ADMIN"
AGENT = "AGENT"
ROLES = (ADMIN, AGENT)

ACTIVE = "active"
DISABLED = "disabled"
DELETING = "deleting"
STATUSES = (ACTIVE, DISABLED, DELETING)


def status_of(workspace: dict[str, Any]) -> str:
    return str(workspace.get("status") or ACTIVE)


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class WorkspaceRepository:
    def __init__(self, database: Database) -> None:
        self._workspaces = database.collection("workspaces")
        self._keys = database.collection("api_keys")
        self._loads = IdLoader(self._workspaces)  # concurrent webhooks share one read

    async def get(self, workspace_id: str) -> dict[str, Any] | None:
        return await self._loads.load(workspace_id)

    async def ensure(
        self, workspace_id: str, name: str, timezone: str, now: datetime, locale: str | None = None
    ) -> dict[str, Any]:
        """Create the workspace unless it exists; a locale missing on an existing one is added."""
        fields: dict[str, Any] = {"name": name, "timezone": timezone, "created_at": now}
        await self._workspaces.update_one({"_id": workspace_id}, {"$setOnInsert": fields}, upsert=True)
        if locale is not None:
            await self._workspaces.update_one(
                {"_id": workspace_id, "locale": {"$exists": False}}, {"$set": {"locale": locale}}
            )
        found = await self.get(workspace_id)
        assert found is not None
        return found

    async def create(self, document: dict[str, Any]) -> dict[str, Any]:
        await self._workspaces.insert_one(document)
        return document

    async def page(self, status: str | None, after_id: str | None, limit: int) -> list[dict[str, Any]]:
        """Workspaces in id order (ids are time-ordered: oldest first), ``limit`` after ``after_id``."""
        query: dict[str, Any] = {}
        if status == ACTIVE:
            query["status"] = {"$in": [ACTIVE, None]}
        elif status is not None:
            query["status"] = status
        if after_id is not None:
            query["_id"] = {"$gt": after_id}
        return await self._workspaces.find(query).sort("_id", 1).limit(limit).to_list()

    async def set_status(
        self, workspace_id: str, status: str, changes: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """Move the workspace to ``status`` (with ``changes``); None when there is no such workspace
        or it is being deleted (only the deletion itself ends that state)."""
        query: dict[str, Any] = {"_id": workspace_id}
        if status != DELETING:
            query["status"] = {"$ne": DELETING}
        return await self._workspaces.find_one_and_update(
            query,
            {"$set": {"status": status, **(changes or {})}},
            return_document=ReturnDocument.AFTER,
        )

    async def status(self, workspace_id: str) -> str | None:
        """The workspace's status, None when there is no such workspace."""
        found = await self._workspaces.find_one({"_id": workspace_id}, {"status": 1})
        return None if found is None else status_of(found)

    async def remove(self, workspace_id: str) -> int:
        """Delete the workspace document itself (its data goes first: ``store/workspace_data.py``)."""
        return (await self._workspaces.delete_one({"_id": workspace_id})).deleted_count

    async def update(self, workspace_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        """Set top-level settings (``timezone``, ``locale``); None when there is no such workspace."""
        if changes:
            await self._workspaces.update_one({"_id": workspace_id}, {"$set": changes})
        return await self.get(workspace_id)

    async def add_key(
        self,
        workspace_id: str,
        api_key: str,
        role: str,
        name: str,
        now: datetime,
        agent_id: str | None = None,
    ) -> dict[str, Any]:
        document = {
            "_id": hash_key(api_key),
            "key_id": new_id("key"),
            "workspace_id": workspace_id,
            "role": role,
            "name": name,
            "agent_id": agent_id,
            "hint": api_key[: len(KEY_PREFIX) + 4],
            "created_at": now,
            "revoked_at": None,
        }
        await self._keys.update_one({"_id": document["_id"]}, {"$setOnInsert": document}, upsert=True)
        return document

    async def find_key(self, api_key: str) -> dict[str, Any] | None:
        """The live key record for ``api_key``, or None when unknown or revoked."""
        found = await self._keys.find_one({"_id": hash_key(api_key)})
        if found is None or found.get("revoked_at") is not None:
            return None
        return found

    async def list_keys(self, workspace_id: str, include_revoked: bool = False) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"workspace_id": workspace_id}
        if not include_revoked:
            query["revoked_at"] = None
        return await self._keys.find(query).sort([("created_at", 1), ("_id", 1)]).to_list()

    async def get_key(self, workspace_id: str, key_id: str) -> dict[str, Any] | None:
        """A key of this workspace by its public id (keys made before ``key_id`` existed: by hash)."""
        return await self._keys.find_one(
            {"workspace_id": workspace_id, "$or": [{"key_id": key_id}, {"_id": key_id}]}
        )

    async def revoke_key(self, workspace_id: str, key_id: str, now: datetime) -> dict[str, Any] | None:
        """Mark the key revoked (idempotent); None when this workspace has no such key."""
        found = await self.get_key(workspace_id, key_id)
        if found is None:
            return None
        if found.get("revoked_at") is None:
            await self._keys.update_one(
                {"_id": found["_id"], "revoked_at": None}, {"$set": {"revoked_at": now}}
            )
            found["revoked_at"] = now
        return found

    async def live_key_ids(self, key_ids: list[str]) -> set[str]:
        """Which of these public key ids are still live (not revoked), in one round trip (keys made
        before ``key_id`` existed go by their hash, like ``get_key``)."""
        query = {"$or": [{"key_id": {"$in": key_ids}}, {"_id": {"$in": key_ids}}], "revoked_at": None}
        wanted, live = set(key_ids), set[str]()
        async for document in self._keys.find(query, {"key_id": 1}):
            live.update(i for i in (document.get("key_id"), document["_id"]) if i in wanted)
        return live

    async def count_live_admin_keys(self, workspace_id: str) -> int:
        return await self._keys.count_documents(
            {"workspace_id": workspace_id, "role": "ADMIN", "revoked_at": None}
        )
