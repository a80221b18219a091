"""Pick the channel of each outbound message: the number it names, else the workspace's default.

A message names its channel (``channel_id``) when its run or conversation has one (see
``docs/channels.md``: a run's channel is chosen when it starts, and follows the number the
customer last wrote to). A message naming no channel, or one that has since been disconnected,
goes through the workspace's default channel; a workspace with no connected number talks
through the sandbox.

Channel documents are cached briefly because every send asks; ``forget`` clears them at once in
this process when a number is connected or changed (other processes see it within the TTL).
"""

from __future__ import annotations

import logging
from typing import Any

from server.channels.base import SendResult
from server.channels.sandbox import SandboxChannel
from server.channels.whatsapp.channel import WhatsAppChannel
from server.expiring import ExpiringCache
from server.store.channels import ChannelRepository, is_connected

log = logging.getLogger(__name__)

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
        """The workspace's default connected channel (None: the sandbox)."""
        return await self._by_workspace.get(workspace_id, lambda: self._channels.for_workspace(workspace_id))

    async def default_channel_id(self, workspace_id: str) -> str | None:
        """The id of the default channel now: a run starting without a channel of its own keeps it."""
        channel = await self.channel_for(workspace_id)
        return channel["_id"] if channel is not None else None

    async def by_id(self, channel_id: str) -> dict[str, Any] | None:
        """A channel by id (each webhook POST names its channel), cached like ``channel_for``."""
        return await self._by_id.get(channel_id, lambda: self._channels.get(channel_id))

    async def route(self, workspace_id: str, message: dict[str, Any]) -> dict[str, Any] | None:
        """The channel ``message`` leaves through, or None for the sandbox."""
        channel_id = message.get("channel_id")
        if channel_id:
            named = await self.by_id(channel_id)
            if named is not None and named.get("workspace_id") == workspace_id and is_connected(named):
                return named
            log.info(
                "message %s names channel %s, which is gone: the default sends it",
                message.get("id"),
                channel_id,
            )
        return await self.channel_for(workspace_id)

    def forget(self, workspace_id: str) -> None:
        """The workspace's channels changed: drop its default, and every channel by id (rare; simpler)."""
        self._by_workspace.forget(workspace_id)
        self._by_id.forget()

    async def send(self, workspace_id: str, message: dict[str, Any], fresh: bool = False) -> SendResult:
        channel = await self.route(workspace_id, message)
        if channel is None or channel.get("kind", "whatsapp") != "whatsapp":
            return await self.sandbox.send(workspace_id, message)
        return await self.whatsapp.send(workspace_id, message, channel, fresh=fresh)
