"""Helpers for broadcast tests: bulk contacts, templates, and reading progress and the outbox."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from server.ids import ContactKey
from server.runtime import Runtime
from server.store.contacts import new_contact
from tests.support.graphql import GraphQLClient, eventually

BROADCAST = """id status total waitingForCapacityUntil error
  counts { total queued started sent delivered read failed skipped cancelled skippedByReason { reason count } }"""
CREATE = f"mutation($i: BroadcastInput!) {{ createBroadcast(input: $i) {{ {BROADCAST} }} }}"
GET = f"query($id: ID!) {{ broadcast(id: $id) {{ {BROADCAST} }} }}"


def contact(workspace_id: str, phone: str, now: datetime, **fields: Any) -> dict[str, Any]:
    document = new_contact(ContactKey(workspace_id, phone), now)
    document.update(fields)
    return document


def window(now: datetime, open_: bool) -> datetime:
    """A last inbound time that leaves the 24-hour window open or closed."""
    return now - (timedelta(hours=1) if open_ else timedelta(days=3))


async def create_template(gql: GraphQLClient, name: str, category: str) -> None:
    components = [{"type": "BODY", "text": "Hola {{1}}"}]
    await gql(
        "mutation($i: TemplateInput!) { createTemplate(input: $i) { id } }",
        i={"name": name, "language": "es", "category": category, "components": components},
    )


async def get(gql: GraphQLClient, broadcast_id: str) -> dict[str, Any]:
    return (await gql(GET, id=broadcast_id))["broadcast"]


async def finished(gql: GraphQLClient, broadcast_id: str, timeout: float = 120.0) -> dict[str, Any]:
    return await eventually(
        lambda: get(gql, broadcast_id),
        lambda b: b["status"] in ("COMPLETED", "CANCELLED", "FAILED"),
        timeout=timeout,
        interval=1.0,
    )


async def sends_per_phone(runtime: Runtime, broadcast_id: str) -> dict[str, int]:
    """What the sandbox channel recorded for the broadcast: messages per phone."""
    cursor = await runtime.database.collection("messages").aggregate(
        [
            {"$match": {"broadcast_id": broadcast_id, "direction": "out", "channel": "sandbox"}},
            {"$group": {"_id": "$phone", "n": {"$sum": 1}}},
        ]
    )
    return {row["_id"]: row["n"] for row in await cursor.to_list()}
