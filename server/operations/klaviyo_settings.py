"""A workspace's Klaviyo connection: the private key (write-only) and an overridable base URL."""

from __future__ import annotations

from typing import Any, Protocol

from server.egress import EgressPolicy
from server.errors import InvalidInput
from server.integrations.klaviyo import DEFAULT_BASE_URL
from server.store.workspace_settings import WorkspaceSettingsRepository


class KlaviyoSettingsServices(Protocol):
    """A workspace's Klaviyo settings and the egress policy its base URL must pass."""

    @property
    def egress(self) -> EgressPolicy: ...

    @property
    def workspace_settings(self) -> WorkspaceSettingsRepository: ...


def view(stored: dict[str, Any] | None) -> dict[str, Any]:
    """What the API shows: never the key itself, only whether there is one and its start."""
    stored = stored or {}
    key = stored.get("private_key") or ""
    return {
        "configured": bool(key),
        "base_url": stored.get("base_url") or DEFAULT_BASE_URL,
        "key_hint": key[:6] + "..." if key else None,
    }


async def get_klaviyo(services: KlaviyoSettingsServices, workspace_id: str) -> dict[str, Any]:
    return view((await services.workspace_settings.get(workspace_id)).get("klaviyo"))


async def set_klaviyo(
    services: KlaviyoSettingsServices, workspace_id: str, private_key: str | None, base_url: str | None = None
) -> dict[str, Any]:
    """Connect (or, with no key, disconnect) Klaviyo; pending syncs use the new settings."""
    key = (private_key or "").strip()
    url = (base_url or DEFAULT_BASE_URL).strip().rstrip("/")
    if url != DEFAULT_BASE_URL:  # a tenant-chosen URL: the egress policy decides (and again at each call)
        await services.egress.check_url(url, "baseUrl")
    if private_key is not None and not key:
        raise InvalidInput("privateKey is empty; pass null to disconnect Klaviyo", field="privateKey")
    value = {"private_key": key, "base_url": url} if key else None
    settings = await services.workspace_settings.set(workspace_id, "klaviyo", value)
    return view(settings.get("klaviyo"))
