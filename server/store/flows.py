"""Flows (editable drafts) and their frozen, numbered versions."""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

from pymongo import ReturnDocument

from server.expiring import ExpiringCache
from server.store.database import Database

# How long a process may start runs from a flow document it read (status, active version): every
# run start reads it, and a change made in this process clears it at once.
FLOW_TTL_SECONDS = 1.0


class FlowRepository:
    def __init__(self, database: Database) -> None:
        self._flows = database.collection("flows")
        self._versions = database.collection("flow_versions")
        self._recent: ExpiringCache[tuple[str, str], dict[str, Any] | None] = ExpiringCache(FLOW_TTL_SECONDS)

    async def insert(self, document: dict[str, Any]) -> dict[str, Any]:
        await self._flows.insert_one(document)
        return document

    async def get(self, workspace_id: str, flow_id: str) -> dict[str, Any] | None:
        return await self._flows.find_one({"_id": flow_id, "workspace_id": workspace_id})

    async def get_many(self, workspace_id: str, flow_ids: list[str]) -> list[dict[str, Any]]:
        """The flows of these ids (missing ones left out), in one round trip: API DataLoaders."""
        return await self._flows.find({"_id": {"$in": flow_ids}, "workspace_id": workspace_id}).to_list()

    async def get_recent(self, workspace_id: str, flow_id: str) -> dict[str, Any] | None:
        """``get``, answered from a read at most ``FLOW_TTL_SECONDS`` old (for starting runs)."""
        return await self._recent.get((workspace_id, flow_id), lambda: self.get(workspace_id, flow_id))

    async def get_by_name(self, workspace_id: str, name: str) -> dict[str, Any] | None:
        return await self._flows.find_one({"workspace_id": workspace_id, "name": name})

    async def list(self, workspace_id: str) -> list[dict[str, Any]]:
        """The workspace's flows, without the hidden one-node flows of template broadcasts."""
        query = {"workspace_id": workspace_id, "hidden": {"$ne": True}}
        return await self._flows.find(query).sort("created_at", 1).to_list()

    async def update(self, workspace_id: str, flow_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        updated = await self._flows.find_one_and_update(
            {"_id": flow_id, "workspace_id": workspace_id},
            {"$set": changes},
            return_document=ReturnDocument.AFTER,
        )
        self._recent.forget((workspace_id, flow_id))  # after the write: a read racing it is not kept
        return updated

    async def next_version(self, workspace_id: str, flow_id: str, now: datetime) -> int:
        """Reserve the next version number atomically (two publishes never share one)."""
        updated = await self._flows.find_one_and_update(
            {"_id": flow_id, "workspace_id": workspace_id},
            {"$inc": {"version_counter": 1}, "$set": {"updated_at": now}},
            return_document=ReturnDocument.AFTER,
        )
        assert updated is not None
        return int(updated["version_counter"])

    async def insert_version(self, document: dict[str, Any]) -> None:
        await self._versions.insert_one(document)

    async def get_version(self, flow_id: str, version: int) -> dict[str, Any] | None:
        return await self._versions.find_one({"flow_id": flow_id, "version": version})

    async def get_versions(
        self, keys: builtins.list[tuple[str, int]]
    ) -> dict[tuple[str, int], dict[str, Any]]:
        """Several (flow id, version) documents in one query."""
        if not keys:
            return {}
        query = {"$or": [{"flow_id": flow_id, "version": version} for flow_id, version in keys]}
        found = await self._versions.find(query).to_list()
        return {(d["flow_id"], d["version"]): d for d in found}

    async def list_versions(self, flow_id: str) -> builtins.list[dict[str, Any]]:
        return await self._versions.find({"flow_id": flow_id}).sort("version", 1).to_list()
