"""Per-workspace settings the contact features need: opt-out words and the Klaviyo connection.

Kept on the workspace document under ``settings`` (its own repository so the API-key code in
``workspaces.py`` stays about keys).
"""

from __future__ import annotations

from typing import Any

from server.store.database import Database


class WorkspaceSettingsRepository:
    def __init__(self, database: Database) -> None:
        self._workspaces = database.collection("workspaces")

    async def get(self, workspace_id: str) -> dict[str, Any]:
        found = await self._workspaces.find_one({"_id": workspace_id}, {"settings": 1})
        return dict((found or {}).get("settings") or {})

    async def set(self, workspace_id: str, name: str, value: Any) -> dict[str, Any]:
        """Set one setting (``opt_out_keywords``, ``klaviyo``) and return all of them."""
        await self._workspaces.update_one({"_id": workspace_id}, {"$set": {f"settings.{name}": value}})
        return await self.get(workspace_id)
