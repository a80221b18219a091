"""Workspaces and their API keys (stored as SHA-256 hashes; the plain key is shown once)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Any

from server.store.database import Database

KEY_PREFIX = "konvo_"


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class WorkspaceRepository:
    def __init__(self, database: Database) -> None:
        self._workspaces = database.collection("workspaces")
        self._keys = database.collection("api_keys")

    async def get(self, workspace_id: str) -> dict[str, Any] | None:
        return await self._workspaces.find_one({"_id": workspace_id})

    async def ensure(self, workspace_id: str, name: str, timezone: str, now: datetime) -> dict[str, Any]:
        await self._workspaces.update_one(
            {"_id": workspace_id},
            {"$setOnInsert": {"name": name, "timezone": timezone, "created_at": now}},
            upsert=True,
        )
        found = await self.get(workspace_id)
        assert found is not None
        return found

    async def add_key(
        self, workspace_id: str, api_key: str, role: str, name: str, now: datetime
    ) -> dict[str, Any]:
        document = {
            "_id": hash_key(api_key),
            "workspace_id": workspace_id,
            "role": role,
            "name": name,
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
