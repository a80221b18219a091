"""WhatsApp Cloud API channel configurations: one document per connected business phone number.

A workspace without a channel talks through the sandbox. Secrets (access token, app secret,
verify token) are sealed in the store (``server/store/sealed.py``) and opened on read; the API
never returns them (the verify token once, to ``connectWhatsApp``).

A phone number id is unique within a workspace only: which tenant really owns a number is
Meta's to know, and a global uniqueness let one tenant squat another's number (and learn from
the CONFLICT that someone had connected it). A new channel takes webhook events only once Meta
has completed the verification handshake on its URL (``webhook_verified_at``); channels stored
before that step existed (no such key) already had their traffic and count as verified.

A workspace may connect several numbers. Its *default* channel (``workspaces.default_channel_id``,
set by ``setDefaultWhatsAppChannel``) sends whatever names no channel of its own; without one,
the oldest connected channel is the default (what every send used before numbers could be
chosen). A disconnected channel keeps its document (messages and runs name it) without its
secrets; it sends nothing and its webhook answers 410.
"""

from __future__ import annotations

from typing import Any

from server.secret_box import SecretBox
from server.store.database import Database
from server.store.sealed import open_fields, reseal_fields, seal_fields

Document = dict[str, Any]

DEFAULT_BASE_URL = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v23.0"
DEFAULT_THROUGHPUT = 80
MAX_THROUGHPUT = 1000
SECRET_FIELDS = ("access_token", "app_secret", "verify_token")
CONNECTED = "connected"
DISCONNECTED = "disconnected"


def new_channel(
    *,
    channel_id: str,
    workspace_id: str,
    phone_number_id: str,
    waba_id: str,
    verify_token: str,
    app_secret: str,
    access_token: str,
    display_phone: str | None = None,
    base_url: str = DEFAULT_BASE_URL,
    api_version: str = DEFAULT_API_VERSION,
    auth_header: str = "Authorization",
    auth_scheme: str = "Bearer",
    throughput_per_second: int = DEFAULT_THROUGHPUT,
    created_at: Any = None,
    business_id: str | None = None,
) -> Document:
    """The stored shape of a channel; ``base_url``/``api_version``/auth header let a BSP stand in for Meta."""
    return {
        "_id": channel_id,
        "workspace_id": workspace_id,
        "kind": "whatsapp",
        "phone_number_id": phone_number_id,
        "waba_id": waba_id,
        "display_phone": display_phone,
        "verify_token": verify_token,
        "app_secret": app_secret,
        "access_token": access_token,
        "base_url": base_url.rstrip("/"),
        "api_version": api_version,
        "auth_header": auth_header,
        "auth_scheme": auth_scheme,
        "throughput_per_second": throughput_per_second,
        "created_at": created_at,
        "webhook_verified_at": None,
        "status": CONNECTED,
        # The business portfolio the number belongs to: its messaging limit is shared by every
        # number of the portfolio (None: the workspace's own, as before portfolios were known).
        "business_id": business_id,
    }


def webhook_verified(channel: Document) -> bool:
    """Whether Meta completed the GET handshake on the channel's webhook URL (see the module doc)."""
    return "webhook_verified_at" not in channel or channel["webhook_verified_at"] is not None


def is_connected(channel: Document) -> bool:
    """Channels stored before disconnection existed have no ``status``: they are connected."""
    status: str = channel.get("status", CONNECTED)
    return status != DISCONNECTED


_CONNECTED_QUERY = {"status": {"$ne": DISCONNECTED}}


class ChannelRepository:
    def __init__(self, database: Database, secrets: SecretBox) -> None:
        self._channels = database.collection("channels")
        # The workspace's choice of default channel lives on the workspace document.
        self._workspaces = database.collection("workspaces")
        self._secrets = secrets

    def _open(self, document: Document | None) -> Document | None:
        return open_fields(self._secrets, document, SECRET_FIELDS)

    async def insert(self, document: Document) -> None:
        await self._channels.insert_one(seal_fields(self._secrets, document, SECRET_FIELDS))

    async def get(self, channel_id: str) -> Document | None:
        """By id alone: the webhook URL names the channel before any workspace is known."""
        return self._open(await self._channels.find_one({"_id": channel_id}))

    async def for_workspace(self, workspace_id: str) -> Document | None:
        """The workspace's default connected channel, or None when it talks through the sandbox."""
        chosen = await self.default_id(workspace_id)
        if chosen is not None:
            found = await self._channels.find_one(
                {"_id": chosen, "workspace_id": workspace_id, **_CONNECTED_QUERY}
            )
            if found is not None:
                return self._open(found)
        found = await self._channels.find_one(
            {"workspace_id": workspace_id, **_CONNECTED_QUERY}, sort=[("created_at", 1), ("_id", 1)]
        )
        return self._open(found)

    async def list(self, workspace_id: str, include_disconnected: bool = False) -> list[Document]:
        """The workspace's channels, oldest first."""
        query: Document = {"workspace_id": workspace_id}
        if not include_disconnected:
            query.update(_CONNECTED_QUERY)
        found = await self._channels.find(query).sort([("created_at", 1), ("_id", 1)]).to_list()
        return [d for d in (self._open(f) for f in found) if d is not None]

    async def default_id(self, workspace_id: str) -> str | None:
        """The channel chosen as default (it may since have been disconnected), or None."""
        found = await self._workspaces.find_one({"_id": workspace_id}, {"default_channel_id": 1})
        return (found or {}).get("default_channel_id")

    async def set_default(self, workspace_id: str, channel_id: str | None) -> None:
        await self._workspaces.update_one({"_id": workspace_id}, {"$set": {"default_channel_id": channel_id}})

    async def disconnect(self, workspace_id: str, channel_id: str, at: Any) -> Document | None:
        """Mark the channel disconnected and drop its secrets (its history stays)."""
        await self._channels.update_one(
            {"_id": channel_id, "workspace_id": workspace_id},
            {
                "$set": {"status": DISCONNECTED, "disconnected_at": at},
                "$unset": {name: "" for name in SECRET_FIELDS},
            },
        )
        await self._workspaces.update_one(
            {"_id": workspace_id, "default_channel_id": channel_id}, {"$set": {"default_channel_id": None}}
        )
        return await self.get_in(workspace_id, channel_id)

    async def get_in(self, workspace_id: str, channel_id: str) -> Document | None:
        """A channel of this workspace by id (any other workspace's id reads as none)."""
        return self._open(await self._channels.find_one({"_id": channel_id, "workspace_id": workspace_id}))

    async def by_phone_number_id(self, workspace_id: str, phone_number_id: str) -> Document | None:
        """The workspace's channel for this number (numbers are unique within a workspace only)."""
        return self._open(
            await self._channels.find_one({"workspace_id": workspace_id, "phone_number_id": phone_number_id})
        )

    async def mark_webhook_verified(self, channel_id: str, at: Any) -> bool:
        """Record Meta's first completed handshake; True when this call recorded it."""
        result = await self._channels.update_one(
            {"_id": channel_id, "webhook_verified_at": None}, {"$set": {"webhook_verified_at": at}}
        )
        return result.modified_count == 1

    async def update(self, workspace_id: str, channel_id: str, changes: Document) -> Document | None:
        sealed = seal_fields(self._secrets, changes, SECRET_FIELDS)
        await self._channels.update_one({"_id": channel_id, "workspace_id": workspace_id}, {"$set": sealed})
        return self._open(await self._channels.find_one({"_id": channel_id, "workspace_id": workspace_id}))

    async def reseal(self) -> tuple[int, int]:
        """Seal plaintext (older) secrets and older-key ones with the current key (start-up)."""
        return await reseal_fields(self._channels, self._secrets, SECRET_FIELDS)
