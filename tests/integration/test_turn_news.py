"""A committed turn's news is one PUBLISH (issue 19), and every subscriber still hears its part.

The wire is watched with a pattern subscription of its own on the real Redis: a customer's reply
that moves a run, is a conversation's message and counts a flow reaches the contact's, the
runs', the inbox's and the flow's analytics subscribers from a single message.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from server.operations import contacts as contact_ops
from server.pubsub import TopicSubscription, analytics_topic, contact_topic, inbox_topic, run_topic
from server.runtime import Runtime
from tests.integration.conftest import WORKSPACE, publish
from tests.integration.test_nodes import flow
from tests.support.contacts import key_of
from tests.support.graphql import GraphQLClient

QUESTION = flow(
    "Question",
    "ask",
    {
        "id": "ask",
        "type": "message",
        "text": "¿Te ayudamos?",
        "buttons": [
            {"id": "yes", "title": "Sí", "next": "thanks"},
            {"id": "no", "title": "No", "next": None},
        ],
    },
    {"id": "thanks", "type": "message", "text": "¡Gracias!", "next": None},
)


async def _next(subscription: TopicSubscription) -> dict[str, Any]:
    return await asyncio.wait_for(subscription.__anext__(), timeout=10)


async def test_one_turn_is_one_publish_that_every_subscriber_hears(
    gql: GraphQLClient, runtime: Runtime
) -> None:
    assert isinstance(runtime.redis, Redis)
    flow_id = await publish(gql, QUESTION)
    phone = "+34600970001"
    await contact_ops.customer_says(runtime.services, WORKSPACE, phone, "hola", None)
    started = await contact_ops.start_flow(runtime.services, WORKSPACE, flow_id, phone, None)
    key = await key_of(runtime, WORKSPACE, phone)
    await runtime.counters.drain()  # news of the turns above (recovery's own) are out

    channel_prefix = runtime.prefix + "pubsub:"
    wire = runtime.redis.pubsub()
    await wire.psubscribe(channel_prefix + "*")
    confirmed = await wire.get_message(timeout=10)  # listening from here on
    assert confirmed is not None and confirmed["type"] == "psubscribe"
    pubsub = runtime.pubsub
    subscriptions = {
        "contact": pubsub.subscribe(contact_topic(key)),
        "runs": pubsub.subscribe(run_topic(WORKSPACE)),
        "inbox": pubsub.subscribe(inbox_topic(WORKSPACE)),
        "analytics": pubsub.subscribe(analytics_topic(WORKSPACE, flow_id)),
    }
    try:
        await contact_ops.customer_says(runtime.services, WORKSPACE, phone, None, "yes")
        heard = {name: await _next(subscription) for name, subscription in subscriptions.items()}
        await runtime.counters.drain()
        await pubsub.publish("probe", {"end": True})  # everything published before it is on the wire
        channels: list[str] = []
        while not channels or channels[-1] != "probe":
            message = await wire.get_message(timeout=10)
            assert message is not None, f"the probe never came; heard {channels}"
            channels.append(message["channel"].decode()[len(channel_prefix) :])
    finally:
        await wire.aclose()
        for subscription in subscriptions.values():
            await subscription.aclose()

    assert channels == [f"turn:{key.doc_id}", "probe"]
    contact = heard["contact"]
    assert contact["_id"] == key.doc_id and contact["runs"][-1]["id"] == started["id"]
    assert heard["inbox"] == contact and heard["inbox"]["last_message_at"] is not None
    run = heard["runs"]
    assert run["id"] == started["id"] and run["status"] == "completed"
    assert (run["contact_id"], run["phone"], run["workspace_id"]) == (key.doc_id, phone, WORKSPACE)
    assert heard["analytics"] == {"flow_id": flow_id}
