"""Three server processes on one store and Redis, each contact's events sent to any of them at random,
one replica SIGKILLed and restarted on the way. With the current design (CAS on the contact
version, no shard leases yet) the crash invariants must still hold: every acknowledged inbound
applied once, every timer fired once in effect, no run stuck. Leases are not built: not tested."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from tests.reliability.conftest import Api, publish
from tests.reliability.drive import Outcome, all_ended, drive_contact, phones, verify
from tests.reliability.flows import wait_and_timer_flow
from tests.support.catalog import ensure_catalog

pytestmark = pytest.mark.e2e


async def replicas_run(
    cluster_factory: Any, mongo: AsyncMongoClient[dict[str, Any]], contacts: int, kills: int
) -> None:
    began = time.monotonic()
    rng = random.Random()
    cluster = cluster_factory()
    for _ in range(3):
        cluster.start()
    api = Api(cluster)
    try:
        gql = api.gql(0)
        definition = wait_and_timer_flow()
        await ensure_catalog(gql, definition)
        flow_id = await publish(gql, definition)
        outcome = Outcome()
        numbers = phones(contacts)
        drivers = asyncio.gather(
            *(
                drive_contact(
                    api,
                    mongo,
                    cluster.db_name,
                    flow_id,
                    p,
                    outcome,
                    [0, 1, 2],
                    rng,
                    spread=max(2.0, contacts / 100),
                )
                for p in numbers
            )
        )
        killed = []
        window = 2.0 + contacts / 100
        for _ in range(kills):
            await asyncio.sleep(rng.uniform(0.3, window / kills + 0.3))
            slot = rng.randrange(3)
            cluster.kill(slot)
            killed.append(slot)
            await asyncio.to_thread(cluster.start, slot)
        await asyncio.wait_for(drivers, timeout=120 + contacts / 2)
        docs = await all_ended(mongo, cluster.db_name, numbers, deadline=60 + contacts / 10)
        verdict = await verify(mongo, cluster.db_name, docs, outcome)
        print(
            f"\n[replicas] processes=3 contacts={contacts} kills={len(killed)} (slots {killed})"
            f" acked_inbound={verdict.inbound_acked} applied_twice={verdict.inbound_applied_twice}"
            f" missing={verdict.inbound_missing} timers_fired={verdict.timers_fired}"
            f" timers_twice={verdict.timers_twice} runs={verdict.runs} outbound={verdict.outbound}"
            f" outbound_duplicates={verdict.outbound_duplicates} client_retries={outcome.retries}"
            f" wall={time.monotonic() - began:.1f}s"
        )
        assert not verdict.problems, verdict.problems[:10]
        assert verdict.inbound_missing == 0 and verdict.inbound_applied_twice == 0
        assert verdict.timers_fired == contacts and verdict.timers_twice == 0
    finally:
        await api.aclose()


async def test_three_replicas_short(cluster_factory: Any, mongo: AsyncMongoClient[dict[str, Any]]) -> None:
    await replicas_run(cluster_factory, mongo, contacts=100, kills=1)


@pytest.mark.full
@pytest.mark.timeout(600)
async def test_three_replicas_full(cluster_factory: Any, mongo: AsyncMongoClient[dict[str, Any]]) -> None:
    await replicas_run(cluster_factory, mongo, contacts=1000, kills=5)
