"""FLUSHALL on Redis while runs wait on timers: recovery re-arms every timer from MongoDB within
10 s and each fires once."""

from __future__ import annotations

import asyncio
import random
import time
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


async def redis_loss(
    cluster_factory: Any, mongo: AsyncMongoClient[dict[str, Any]], own_redis: str, contacts: int, delay: str
) -> None:
    cluster = cluster_factory(redis_url=own_redis)
    cluster.start()
    api = Api(cluster)
    redis = redis_client(own_redis)  # one Redis or a Redis Cluster, as the server's
    try:
        gql = api.gql(0)
        definition = wait_and_timer_flow(delay=delay)
        await ensure_catalog(gql, definition)
        flow_id = await publish(gql, definition)
        outcome = Outcome()
        numbers = phones(contacts)
        rng = random.Random()
        await drive_all(api, mongo, cluster.db_name, flow_id, numbers, outcome, [0], rng)
        waiting = await pending_timers(mongo, cluster.db_name)
        # The no-reply timer was cancelled by the reply; each contact now waits on its delay, unless a
        # slow machine took so long driving them that the first delays already fired (still checked below).
        assert contacts // 2 <= len(waiting) <= contacts
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
        docs = await all_ended(mongo, cluster.db_name, numbers, deadline=60)
        verdict = await verify(mongo, cluster.db_name, docs, outcome)
        print(
            f"\n[redis-loss] contacts={contacts} timers_waiting={len(waiting)} queued_before_flush={queued}"
            f" rearmed_within={rebuilt_after:.1f}s timers_fired={verdict.timers_fired}"
            f" timers_twice={verdict.timers_twice} outbound_duplicates={verdict.outbound_duplicates}"
        )
        assert not verdict.problems, verdict.problems[:10]
        assert verdict.timers_fired == contacts and verdict.timers_twice == 0
    finally:
        await redis.aclose()
        await api.aclose()


async def test_flushall_short(
    cluster_factory: Any, mongo: AsyncMongoClient[dict[str, Any]], own_redis: str
) -> None:
    await redis_loss(cluster_factory, mongo, own_redis, contacts=40, delay="PT10S")


@pytest.mark.full
@pytest.mark.timeout(600)
@pytest.mark.parametrize("own_redis", ["standalone"], indirect=True)  # the short one also runs on a cluster
async def test_flushall_full(
    cluster_factory: Any, mongo: AsyncMongoClient[dict[str, Any]], own_redis: str
) -> None:
    await redis_loss(cluster_factory, mongo, own_redis, contacts=1000, delay="PT40S")
