"""A WhatsApp channel on a test's own database, and Meta-shaped inbound texts with fresh ids."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import AsyncMongoClient

from server.ids import new_id
from server.store.channels import new_channel
from tests.reliability.conftest import WORKSPACE
from tests.support.graph_api_fake import GraphApiFake
from tests.support.whatsapp_webhooks import APP_SECRET, VERIFY_TOKEN, message_of, payload, value_of

CHANNEL_ID = "ch_reliability"


async def add_channel(
    mongo: AsyncMongoClient[dict[str, Any]], db: str, graph: GraphApiFake, throughput: int | None = None
) -> dict[str, Any]:
    extra = {"throughput_per_second": throughput} if throughput else {}
    document = new_channel(
        channel_id=CHANNEL_ID,
        workspace_id=WORKSPACE,
        verify_token=VERIFY_TOKEN,
        app_secret=APP_SECRET,
        created_at=datetime.now(UTC),
        **graph.channel_fields(),
        **extra,
    )
    document["webhook_verified_at"] = datetime.now(UTC)  # Meta's handshake done (server/store/channels.py)
    await mongo[db]["channels"].insert_one(document)
    return document


def inbound_text(wa_id: str, text: str) -> tuple[str, dict[str, Any]]:
    """A text from ``wa_id`` (digits) sent now, with a wamid of its own; returns (wamid, body)."""
    body = payload("text")
    message = message_of(body)
    wamid = f"wamid.{new_id('rel')}"
    message.update(id=wamid, timestamp=str(int(datetime.now(UTC).timestamp())), text={"body": text})
    message["from"] = wa_id
    value_of(body)["contacts"][0]["wa_id"] = wa_id
    return wamid, body
