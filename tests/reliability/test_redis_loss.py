"""FLUSHALL on Redis while runs wait on timers: recovery re-arms every timer from MongoDB within
10 s and each fires once.

Contacts are driven in batches until all are, or until the first delay is due within twice the
time the last batch took: Redis is flushed while every driven contact still waits (how many
contacts that is depends on the machine's speed, not on a guess of it)."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from arq.constants import job_key_prefix
from pymongo import AsyncMongoClient

from server.redis_clients import redis_client
from server.redis_keys import arq_job_id
from tests.reliability.conftest import WORKSPACE, Api, publish
from tests.reliability.drive import Outcome, all_ended, drive_all, phones, verify
from tests.reliability.flows import wait_and_timer_flow
from tests.support.catalog import ensure_catalog

pytestmark = pytest.mark.e2e


def timer_job_key(timer_id: str) -> str:
    return job_key_prefix + arq_job_id(timer_id)


async def pending_timers(mongo: AsyncMongoClient[dict[str, Any]], db: str) -> list[str]:
    docs = await mongo[db]["contacts"].find({"workspace_id": WORKSPACE}).to_list()
    return [t["id"] for d in docs for t in d.get("timers", [])]


BATCH = 100  # contacts driven at once


async def first_delay_due_in(mongo: AsyncMongoClient[dict[str, Any]], db: str) -> float | None:
    """Seconds until the earliest pending delay timer is due (the store keeps naive UTC)."""
    docs = await mongo[db]["contacts"].find({"workspace_id": WORKSPACE, "timers.kind": "delay"}).to_list()
    dues = [t["due_at"] for d in docs for t in d["timers"] if t["kind"] == "delay"]
    if not dues:
        return None
    return (min(dues) - datetime.now(UTC).replace(tzinfo=None)).total_seconds()


async def drive_before_the_first_delay(
    api: Api,
    mongo: AsyncMongoClient[dict[str, Any]],
    db: str,
    flow_id: str,
    numbers: list[str],
    outcome: Outcome,
) -> list[str]:
    """Drive ``numbers`` in batches; stop once the first delay is due within twice the last batch's time."""
    rng = random.Random()
    driven: list[str] = []
    for start in range(0, len(numbers), BATCH):
        batch = numbers[start : start + BATCH]
        began = time.monotonic()
        await drive_all(api, mongo, db, flow_id, batch, outcome, [0], rng)
        driven += batch
        due_in = await first_delay_due_in(mongo, db)
        if due_in is not None and due_in < 2 * (time.monotonic() - began):
            break
    return driven


async def redis_loss(
    cluster_factory: Any, mongo: AsyncMongoClient[dict[str, Any]], own_redis: str, contacts: int, delay: int
) -> None:
    cluster = cluster_factory(redis_url=own_redis)
    cluster.start()
    api = Api(cluster)
    redis = redis_client(own_redis)  # one Redis or a Redis Cluster, as the server's
    try:
        gql = api.gql(0)
        definition = wait_and_timer_flow(delay=f"PT{delay}S")
        await ensure_catalog(gql, definition)
        flow_id = await publish(gql, definition)
        outcome = Outcome()
        numbers = await drive_before_the_first_delay(
            api, mongo, cluster.db_name, flow_id, phones(contacts), outcome
        )
        waiting = await pending_timers(mongo, cluster.db_name)
        # The no-reply timer was cancelled by the reply; each contact now waits on its delay, unless the
        # last batch took more than twice as long as the one before and the first delays fired already
        # (those are still checked below).
        assert len(numbers) // 2 <= len(waiting) <= len(numbers)
        queued = sum([await redis.exists(timer_job_key(t)) for t in waiting])
        await redis.flushall()  # on a cluster: every master
        flushed = time.monotonic()
        assert sum([await redis.exists(timer_job_key(t)) for t in waiting]) == 0
        while True:
            still = await pending_timers(mongo, cluster.db_name)
            rearmed = sum([await redis.exists(timer_job_key(t)) for t in still])
            if rearmed == len(still):
                break
            assert time.monotonic() - flushed < 10, (
                f"{len(still) - rearmed} timers not back in Redis after 10 s"
            )
            await asyncio.sleep(0.1)
        rebuilt_after = time.monotonic() - flushed
        docs = await all_ended(mongo, cluster.db_name, numbers, deadline=delay + 60)
        verdict = await verify(mongo, cluster.db_name, docs, outcome)
        print(
            f"\n[redis-loss] contacts={len(numbers)} (of {contacts}) timers_waiting={len(waiting)} queued_before_flush={queued}"
            f" rearmed_within={rebuilt_after:.1f}s timers_fired={verdict.timers_fired}"
            f" timers_twice={verdict.timers_twice} outbound_duplicates={verdict.outbound_duplicates}"
        )
        assert not verdict.problems, verdict.problems[:10]
        assert verdict.timers_fired == len(numbers) and verdict.timers_twice == 0
    finally:
        await redis.aclose()
        await api.aclose()


async def test_flushall_short(
    cluster_factory: Any, mongo: AsyncMongoClient[dict[str, Any]], own_redis: str
) -> None:
    await redis_loss(cluster_factory, mongo, own_redis, contacts=40, delay=10)


@pytest.mark.full
@pytest.mark.timeout(600)
@pytest.mark.parametrize("own_redis", ["standalone"], indirect=True)  # the short one also runs on a cluster
async def test_flushall_full(
    cluster_factory: Any, mongo: AsyncMongoClient[dict[str, Any]], own_redis: str
) -> None:
    await redis_loss(cluster_factory, mongo, own_redis, contacts=1000, delay=40)
