"""Checking a channel a tenant names for a flow, a trigger, a broadcast or a run start.

Every id a tenant sends is scoped to its workspace: another workspace's channel reads as none.
"""

from __future__ import annotations

from typing import Any

from server.errors import Conflict, NotFound
from server.store.channels import ChannelRepository, is_connected


async def require_channel(
    channels: ChannelRepository, workspace_id: str, channel_id: str, field: str = "channelId"
) -> dict[str, Any]:
    """A connected channel of this workspace, or NOT_FOUND / CONFLICT naming ``field``."""
    channel = await channels.get_in(workspace_id, channel_id)
    if channel is None:
        raise NotFound(f"WhatsApp channel {channel_id} not found", field=field)
    if not is_connected(channel):
        raise Conflict(
            f"WhatsApp channel {channel_id} is disconnected; connect its number again (connectWhatsApp)",
            field=field,
        )
    return channel


async def chosen_channel_id(
    channels: ChannelRepository, workspace_id: str, channel_id: str | None, field: str = "channelId"
) -> str | None:
    """``channel_id`` checked; None stays None (the flow's or the workspace's default channel decides)."""
    if channel_id is None:
        return None
    return (await require_channel(channels, workspace_id, channel_id, field=field))["_id"]
