"""The server on a real three-master Redis Cluster: a short scenario (flows, inbound messages,
timers armed, fired and re-armed, socket slots, replay nonces, rate windows, pub/sub, an
integration job) runs without a cross-slot refusal, and every key it leaves lands in the slot its
family's layout says (``server/redis_keys.py``), checked with the cluster's own CLUSTER KEYSLOT on
the node that holds the key."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from arq.constants import job_key_prefix
from redis.asyncio import Redis

from server.actors.recovery import recover
from server.config import Settings
from server.operations import contacts as contact_ops
from server.operations import flows as flow_ops
from server.pubsub import inbox_topic
from server.redis_keys import ARQ_TAG, arq_job_id, integrations_queue, shard_keys_prefix, socket_slots_prefix
from server.runtime import Runtime
from tests.integration.test_timer_batching import FLOW, WORKSPACE
from tests.support.contacts import key_of
from tests.support.graphql import eventually
from tests.support.redis_cluster import LocalRedisCluster

# Keys of one command or a single-key script each: they may land anywhere.
SINGLE_KEY_FAMILIES = ("rate:", "hook-signature:", "parked:", "wa:", "shard-inbox:", "shard-replies:")


@pytest.fixture
async def on_cluster(fast_settings: Settings, redis_cluster: LocalRedisCluster) -> AsyncIterator[Runtime]:
    runtime = Runtime(fast_settings.model_copy(update={"redis_url": redis_cluster.url}))
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


async def keys_by_node(cluster: LocalRedisCluster) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for port in cluster.ports:
        node = Redis(host="127.0.0.1", port=port)
        try:
            found[port] = [k.decode() async for k in node.scan_iter(count=1000)]
        finally:
            await node.aclose()
    return found


def expected_tag(key: str, prefix: str) -> str | None:
    """The hash tag the layout gives ``key``, None for a single-key family; fails on an unknown key."""
    if key.startswith("arq:") or key.startswith(ARQ_TAG):
        return ARQ_TAG
    for tagged in (shard_keys_prefix(prefix), socket_slots_prefix(prefix)):
        if key.startswith(tagged):
            return tagged[: tagged.index("}") + 1]
    assert key.startswith(prefix), f"a key outside the layout: {key}"
    rest = key[len(prefix) :]
    assert rest.startswith(SINGLE_KEY_FAMILIES), f"a key of no known family: {key}"
    assert "{" not in key, key
    return None


async def test_every_key_a_short_scenario_writes_lands_in_its_familys_slot(
    on_cluster: Runtime, redis_cluster: LocalRedisCluster
) -> None:
    runtime = on_cluster
    prefix = runtime.prefix
    assert runtime.actors is not None and runtime.timers is not None and runtime.arq is not None
    # Pub/sub across the cluster: the process's listener hears what a PUBLISH sent to any node.
    heard: list[dict[str, object]] = []
    runtime.pubsub.on("probe", heard.append)
    conversations: list[dict[str, object]] = []  # turns' news, one PUBLISH each, fanned out here
    runtime.pubsub.on(inbox_topic(WORKSPACE), conversations.append)
    await runtime.workspaces.ensure(WORKSPACE, "Timers", "Europe/Madrid", runtime.clock.now())
    flow = await flow_ops.import_flow(runtime.services, WORKSPACE, FLOW)
    await flow_ops.publish_flow(runtime.services, WORKSPACE, flow["_id"])
    phones = [f"+3462{i:07d}" for i in range(6)]
    for phone in phones:  # contacts spread over shards; each turn commits and arms a no-reply timer
        await contact_ops.customer_says(runtime.services, WORKSPACE, phone, "hola", None)
        await contact_ops.start_flow(runtime.services, WORKSPACE, flow["_id"], phone, None)
    queue = runtime.timers.queue_name
    assert await runtime.arq.zcard(queue) == len(phones)
    await eventually(lambda: asyncio.sleep(0, conversations), lambda got: len(got) >= 2 * len(phones))
    # Recovery's batch re-arm (one script over many timers) and the worker's claim and ack.
    contacts = runtime.database.collection("contacts")
    due = runtime.clock.now() - timedelta(seconds=1)
    await contacts.update_one(
        {"_id": (await key_of(runtime, WORKSPACE, phones[0])).doc_id}, {"$set": {"timers.0.due_at": due}}
    )
    timer_ids = [
        (await contacts.find_one({"_id": (await key_of(runtime, WORKSPACE, p)).doc_id}))["timers"][0]["id"]
        for p in phones
    ]
    await runtime.arq.delete(queue, *(job_key_prefix + arq_job_id(t) for t in timer_ids))  # as if lost
    report = await recover(runtime.contacts, runtime.messages, runtime.timers, runtime.actors, runtime.clock)
    assert report.timers_armed == len(phones)
    await eventually(lambda: runtime.arq.zcard(queue), lambda n: n == len(phones) - 1)  # one fired
    await runtime.recover_now()  # the recovery marker and the legacy-timer check
    # Socket slots of two API keys renewed by one script; a replay nonce.
    slots = [await runtime.socket_slots.acquire(f"key_{n}") for n in range(2)]
    assert all(slots)
    await runtime.socket_slots.renew()
    assert await runtime.services.replays.claim(f"sig-{uuid.uuid4().hex}")
    # An integration job through arq's own enqueue (WATCH/MULTI) on the pinned connection.
    await runtime.arq.enqueue_job(
        "sync_external", _job_id=ARQ_TAG + "probe", _queue_name=integrations_queue(prefix)
    )
    await runtime.pubsub.publish("probe", {"n": 1})
    await eventually(lambda: asyncio.sleep(0, heard), lambda got: got == [{"n": 1}])

    families: dict[str, set[int]] = {}
    for port, keys in (await keys_by_node(redis_cluster)).items():
        node = Redis(host="127.0.0.1", port=port)
        try:
            for key in keys:
                tag = expected_tag(key, prefix)
                slot = int(await node.execute_command("CLUSTER KEYSLOT", key))
                if tag is not None:
                    assert slot == int(await node.execute_command("CLUSTER KEYSLOT", tag)), key
                    families.setdefault(tag, set()).add(slot)
        finally:
            await node.aclose()
    assert set(families) >= {ARQ_TAG, shard_keys_prefix(prefix)[:-1], socket_slots_prefix(prefix)[:-1]}
    assert all(len(slots) == 1 for slots in families.values()), families
