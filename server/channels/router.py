"""Pick each workspace's channel: its connected WhatsApp number, else the sandbox (the default).

The channel document is cached briefly because every send asks; ``forget`` clears it at once in
this process when a number is connected or changed (other processes see it within the TTL).
"""

from __future__ import annotations

import time
from typing import Any

from server.channels.base import SendResult
from server.channels.sandbox import SandboxChannel
from server.channels.whatsapp.channel import WhatsAppChannel
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
        self._cache: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self._by_id: dict[str, tuple[float, dict[str, Any] | None]] = {}

    async def channel_for(self, workspace_id: str) -> dict[str, Any] | None:
        cached = self._cache.get(workspace_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        found = await self._channels.for_workspace(workspace_id)
        self._cache[workspace_id] = (time.monotonic() + CHANNEL_TTL_SECONDS, found)
        return found

    async def by_id(self, channel_id: str) -> dict[str, Any] | None:
        """A channel by id (each webhook POST names its channel), cached like ``channel_for``."""
        cached = self._by_id.get(channel_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        found = await self._channels.get(channel_id)
        self._by_id[channel_id] = (time.monotonic() + CHANNEL_TTL_SECONDS, found)
        return found

    def forget(self, workspace_id: str) -> None:
        self._cache.pop(workspace_id, None)
        self._by_id.clear()  # rare (a number connected or changed): simpler than finding its ids

    async def send(self, workspace_id: str, message: dict[str, Any], fresh: bool = False) -> SendResult:
        channel = await self.channel_for(workspace_id)
        if channel is None or channel.get("kind", "whatsapp") != "whatsapp":
            return await self.sandbox.send(workspace_id, message)
        return await self.whatsapp.send(workspace_id, message, channel, fresh=fresh)
