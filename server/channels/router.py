"""Pick each workspace's channel: its connected WhatsApp number, else the sandbox (the default).

The channel document is cached briefly because every send asks; ``forget`` clears it at once in
this process when a number is connected or changed (other processes see it within the TTL). When
an entry expires under load, one lookup goes to the store and the concurrent askers share it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
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
        # (kind, key) -> (expires at, channel); kind "ws" for a workspace's channel, "id" by id.
        self._cache: dict[tuple[str, str], tuple[float, dict[str, Any] | None]] = {}
        self._loading: dict[tuple[str, str], asyncio.Future[dict[str, Any] | None]] = {}
        self._generation = 0  # bumped by ``forget``: a lookup begun before it caches nothing

    async def channel_for(self, workspace_id: str) -> dict[str, Any] | None:
        return await self._cached(("ws", workspace_id), lambda: self._channels.for_workspace(workspace_id))

    async def by_id(self, channel_id: str) -> dict[str, Any] | None:
        """A channel by id (each webhook POST names its channel), cached like ``channel_for``."""
        return await self._cached(("id", channel_id), lambda: self._channels.get(channel_id))

    async def _cached(
        self, key: tuple[str, str], load: Callable[[], Awaitable[dict[str, Any] | None]]
    ) -> dict[str, Any] | None:
        cached = self._cache.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        loading = self._loading.get(key)
        if loading is None:
            loading = asyncio.ensure_future(self._load(key, load, self._generation))
            self._loading[key] = loading
        return await asyncio.shield(loading)  # one caller cancelled does not cancel the others' lookup

    async def _load(
        self, key: tuple[str, str], load: Callable[[], Awaitable[dict[str, Any] | None]], generation: int
    ) -> dict[str, Any] | None:
        try:
            found = await load()
            if generation == self._generation:
                self._cache[key] = (time.monotonic() + CHANNEL_TTL_SECONDS, found)
            return found
        finally:
            if generation == self._generation:
                self._loading.pop(key, None)

    def forget(self, workspace_id: str) -> None:
        """The workspace's channel changed: drop it, and every channel by id (rare; simpler)."""
        self._generation += 1
        self._loading.clear()
        self._cache = {key: entry for key, entry in self._cache.items() if key[0] == "ws"}
        self._cache.pop(("ws", workspace_id), None)

    async def send(self, workspace_id: str, message: dict[str, Any], fresh: bool = False) -> SendResult:
        channel = await self.channel_for(workspace_id)
        if channel is None or channel.get("kind", "whatsapp") != "whatsapp":
            return await self.sandbox.send(workspace_id, message)
        return await self.whatsapp.send(workspace_id, message, channel, fresh=fresh)
