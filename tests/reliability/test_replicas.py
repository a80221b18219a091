"""Three server processes on one store and Redis, each contact's events sent to any of them at random,
replicas SIGKILLed and restarted on the way.

Contacts are sharded and each shard is leased by one replica (server/actors/leases.py); a request
reaching another replica is forwarded to the owner. Checked: the three replicas share the shards;
a killed replica's shards are held by the survivors within 15 s (read from the lease keys in
Redis); and the crash invariants hold: every acknowledged inbound applied once, every timer fired
once in effect, no run stuck.
"""

from __future__ import annotations

import asyncio
import random
import signal
import socket
import time
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from redis import Redis

from server.config import Settings
from server.redis_keys import key_prefix, shard_lease_key
from tests.conftest import ServiceURLs
from tests.reliability.conftest import Api, Cluster, publish
from tests.reliability.drive import Outcome, all_ended, drive_all, phones, verify
from tests.reliability.flows import wait_and_timer_flow
from tests.support.catalog import ensure_catalog

pytestmark = pytest.mark.e2e

SHARDS = Settings.model_fields["shard_count"].default
TAKEOVER_LIMIT = 15.0


def replica_of(cluster: Cluster, slot: int) -> str:
    """The start of a process's replica id (``host-pid-random``, the default of ``replica_id``)."""
    return f"{socket.gethostname()}-{cluster.procs[slot].process.pid}-".replace("/", "-")


def lease_holders(redis: Redis, cluster: Cluster) -> list[str | None]:
    """The replica id holding each shard's lease (``replica/epoch`` in Redis), None when free."""
    prefix = key_prefix(cluster.db_name)
    values = redis.mget([shard_lease_key(prefix, n) for n in range(SHARDS)])
    return [v.decode().rpartition("/")[0] if v else None for v in values]


def owners_settle(redis: Redis, cluster: Cluster, slots: list[int], timeout: float) -> float:
    """Seconds until every shard is held and only by the processes in ``slots``, each holding some."""
    began = time.monotonic()
    while True:
        holders = lease_holders(redis, cluster)
        wanted = [replica_of(cluster, s) for s in slots]
        owners = [next((w for w in wanted if h and h.startswith(w)), None) for h in holders]
        if None not in owners and set(owners) == set(wanted):
            return time.monotonic() - began
        if time.monotonic() - began > timeout:
            counts = {w: owners.count(w) for w in wanted}
            raise AssertionError(
                f"shards not held by {wanted} within {timeout}s: {counts}, free {holders.count(None)}, "
                f"other {sum(1 for h, o in zip(holders, owners, strict=True) if h and o is None)}"
            )
        time.sleep(0.1)  # polling interval


async def wait_for_owners(redis: Redis, cluster: Cluster, slots: list[int], timeout: float) -> float:
    """``owners_settle`` in a thread of its own: the test's event loop, busy with a thousand drivers on
    a loaded machine, may come back to a poll seconds late and count that as takeover time."""
    return await asyncio.to_thread(owners_settle, redis, cluster, slots, timeout)


async def replicas_run(
    cluster_factory: Any,
    mongo: AsyncMongoClient[dict[str, Any]],
    services: ServiceURLs,
    contacts: int,
    kills: int,
) -> None:
    began = time.monotonic()
    rng = random.Random()
    cluster = cluster_factory()
    for _ in range(3):
        cluster.start()
    api = Api(cluster)
    redis = Redis.from_url(services.redis_url)
    try:
        balanced = await wait_for_owners(redis, cluster, [0, 1, 2], timeout=TAKEOVER_LIMIT)
        shares = [
            sum(1 for h in lease_holders(redis, cluster) if h and h.startswith(replica_of(cluster, s)))
            for s in range(3)
        ]
        gql = api.gql(0)
        definition = wait_and_timer_flow()
        await ensure_catalog(gql, definition)
        flow_id = await publish(gql, definition)
        outcome = Outcome()
        numbers = phones(contacts)
        drivers = drive_all(api, mongo, cluster.db_name, flow_id, numbers, outcome, [0, 1, 2], rng)
        killed: list[int] = []
        takeovers: list[float] = []
        moved: list[int] = []
        window = 2.0 + contacts / 100
        for _ in range(kills):
            await asyncio.sleep(rng.uniform(0.3, window / kills + 0.3))
            slot = rng.randrange(3)
            dead = replica_of(cluster, slot)
            moved.append(sum(1 for h in lease_holders(redis, cluster) if h and h.startswith(dead)))
            cluster.kill(slot)
            killed.append(slot)
            survivors = [s for s in range(3) if s != slot]
            takeovers.append(await wait_for_owners(redis, cluster, survivors, timeout=TAKEOVER_LIMIT))
            await asyncio.to_thread(cluster.start, slot)
        await asyncio.wait_for(drivers, timeout=120 + contacts / 2)
        docs = await all_ended(mongo, cluster.db_name, numbers, deadline=60 + contacts / 10)
        verdict = await verify(mongo, cluster.db_name, docs, outcome)
        rejoined = await wait_for_owners(redis, cluster, [0, 1, 2], timeout=TAKEOVER_LIMIT)
        # SIGTERM releases the leases: the others hold the shards at once, not after a lease ttl.
        cluster.procs[0].process.send_signal(signal.SIGTERM)
        released = await wait_for_owners(redis, cluster, [1, 2], timeout=TAKEOVER_LIMIT)
        assert await asyncio.to_thread(cluster.procs[0].process.wait, 30) == 0
        events = verdict.inbound_acked + len(outcome.acked_starts) + verdict.timers_fired
        duplicates = verdict.inbound_applied_twice + verdict.timers_twice + verdict.outbound_duplicates
        print(
            f"\n[replicas] processes=3 shards={SHARDS} shares={shares} (balanced in {balanced:.1f}s)"
            f" contacts={contacts} events={events} kills={len(killed)} (slots {killed})"
            f" shards_moved={moved} takeover_s={[round(t, 1) for t in takeovers]}"
            f" rejoined_in={rejoined:.1f}s sigterm_handover={released:.1f}s duplicates={duplicates}"
            f" acked_inbound={verdict.inbound_acked} applied_twice={verdict.inbound_applied_twice}"
            f" missing={verdict.inbound_missing} timers_fired={verdict.timers_fired}"
            f" timers_twice={verdict.timers_twice} runs={verdict.runs} outbound={verdict.outbound}"
            f" outbound_duplicates={verdict.outbound_duplicates} client_retries={outcome.retries}"
            f" wall={time.monotonic() - began:.1f}s"
        )
        assert all(t < TAKEOVER_LIMIT for t in takeovers), takeovers
        assert released < Settings.model_fields["lease_ttl_seconds"].default, released
        assert not verdict.problems, verdict.problems[:10]
        assert verdict.inbound_missing == 0 and verdict.inbound_applied_twice == 0
        assert verdict.timers_fired == contacts and verdict.timers_twice == 0
    finally:
        redis.close()
        await api.aclose()


# A hang guard, not a speed check: at load 10 on 2 cores starting the three processes took 45 s and
# the restart after the kill was still starting when the default 120 s ran out.
@pytest.mark.timeout(300)
async def test_three_replicas_short(
    cluster_factory: Any, mongo: AsyncMongoClient[dict[str, Any]], services: ServiceURLs
) -> None:
    await replicas_run(cluster_factory, mongo, services, contacts=100, kills=1)


@pytest.mark.full
# A guard against a hang, above the run's own bounds (drivers 620 s, runs ending 160 s, five
# takeovers of 15 s): at load 10 on 2 cores the drivers alone took more than 600 s.
@pytest.mark.timeout(1200)
async def test_three_replicas_full(
    cluster_factory: Any, mongo: AsyncMongoClient[dict[str, Any]], services: ServiceURLs
) -> None:
    await replicas_run(cluster_factory, mongo, services, contacts=1000, kills=5)
