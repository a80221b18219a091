"""Point a test runtime's workspace at the loopback Graph API fake, with millisecond retries."""

from __future__ import annotations

from typing import Any

from server.channels.whatsapp.client import RetryPolicy
from server.clock import SystemClock
from server.ids import new_id
from server.runtime import Runtime
from server.store.channels import new_channel
from tests.support.graph_api_fake import GraphApiFake

FAST_RETRIES = RetryPolicy(
    attempts=5, base_seconds=0.005, max_delay_seconds=0.05, max_total_seconds=3.0, timeout_seconds=0.5
)


async def connect_fake(
    runtime: Runtime, workspace_id: str, fake: GraphApiFake, throughput: int = 1000
) -> dict[str, Any]:
    """Store a WhatsApp channel for ``workspace_id`` whose Graph API is ``fake``."""
    runtime.graph.policy = FAST_RETRIES
    document = new_channel(
        channel_id=new_id("chn"),
        workspace_id=workspace_id,
        verify_token="verify-me",
        app_secret="app-secret",
        throughput_per_second=throughput,
        created_at=SystemClock().now(),
        **fake.channel_fields(),
    )
    await runtime.channels.insert(document)
    await runtime.channels.mark_webhook_verified(document["_id"], SystemClock().now())  # as Meta's handshake
    runtime.channel.forget(workspace_id)
    return await runtime.channels.get(document["_id"]) or document
