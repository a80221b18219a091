"""Pick each workspace's channel: its connected WhatsApp number, else the sandbox (the default).

The channel document is cached briefly because every send asks; ``forget`` clears it at once in
this process when a number is connected or changed (other processes see it within the TTL).
"""

from __future__ import annotations

from typing import Any

from server.channels.base import SendResult
from server.channels.sandbox import SandboxChannel
from server.channels.whatsapp.channel import WhatsAppChannel
from server.expiring import ExpiringCache
from server.store.channels import ChannelRepository

CHANNEL_TTL_SECONDS = 5.0


class ChannelRouter:
    # Effects records a permanent send failure under ``channel.name``; only WhatsApp sends fail
    # for good (the sandbox always accepts), so that is the name such a record must carry.
    name = "whatsapp"

    def __init__(
        self, channels: ChannelRepository, sandbox: SandboxChannel, whatsapp: WhatsAppChannel
    ) -> None:
        self._channels = channels
        self.sandbox = sandbox
        self.whatsapp = whatsapp
        self._by_workspace: ExpiringCache[str, dict[str, Any] | None] = ExpiringCache(CHANNEL_TTL_SECONDS)
        self._by_id: ExpiringCache[str, dict[str, Any] | None] = ExpiringCache(CHANNEL_TTL_SECONDS)

    async def channel_for(self, workspace_id: str) -> dict[str, Any] | None:
        return await self._by_workspace.get(workspace_id, lambda: self._channels.for_workspace(workspace_id))

    async def by_id(self, channel_id: str) -> dict[str, Any] | None:
        """A channel by id (each webhook POST names its channel), cached like ``channel_for``."""
        return await self._by_id.get(channel_id, lambda: self._channels.get(channel_id))

    def forget(self, workspace_id: str) -> None:
        """The workspace's channel changed: drop it, and every channel by id (rare; simpler)."""
        self._by_workspace.forget(workspace_id)
        self._by_id.forget()

    async def send(self, workspace_id: str, message: dict[str, Any], fresh: bool = False) -> SendResult:
        channel = await self.channel_for(workspace_id)
        if channel is None or channel.get("kind", "whatsapp") != "whatsapp":
            return await self.sandbox.send(workspace_id, message)
        return await self.whatsapp.send(workspace_id, message, channel, fresh=fresh)
