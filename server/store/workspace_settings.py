"""Per-workspace settings the contact features need: opt-out words and the Klaviyo connection.

Kept on the workspace document under ``settings`` (its own repository so the API-key code in
``workspaces.py`` stays about keys). The Klaviyo private key is sealed in the store and opened on
read (``server/store/sealed.py``).
"""

from __future__ import annotations

from typing import Any

from server.secret_box import SecretBox
from server.store.database import Database
from server.store.sealed import open_fields, reseal_fields, seal_fields

SECRET_FIELDS = ("klaviyo.private_key",)  # within ``settings``


class WorkspaceSettingsRepository:
    def __init__(self, database: Database, secrets: SecretBox) -> None:
        self._workspaces = database.collection("workspaces")
        self._secrets = secrets

    async def get(self, workspace_id: str) -> dict[str, Any]:
        found = await self._workspaces.find_one({"_id": workspace_id}, {"settings": 1})
        settings = dict((found or {}).get("settings") or {})
        return open_fields(self._secrets, settings, SECRET_FIELDS) or {}

    async def set(self, workspace_id: str, name: str, value: Any) -> dict[str, Any]:
        """Set one setting (``opt_out_keywords``, ``klaviyo``) and return all of them."""
        sealed = seal_fields(self._secrets, {name: value}, SECRET_FIELDS)[name]
        await self._workspaces.update_one({"_id": workspace_id}, {"$set": {f"settings.{name}": sealed}})
        return await self.get(workspace_id)

    async def reseal(self) -> tuple[int, int]:
        """Seal plaintext (older) secrets and older-key ones with the current key (start-up)."""
        return await reseal_fields(self._workspaces, self._secrets, [f"settings.{p}" for p in SECRET_FIELDS])
