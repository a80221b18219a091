"""SIGTERM under load: the server finishes the turns in flight and exits 0; after a restart every
acknowledged inbound is in contact state once and every run reaches its end."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from tests.reliability.conftest import Api, publish
from tests.reliability.drive import Outcome, all_ended, drive_all, phones, verify
from tests.reliability.flows import wait_and_timer_flow
from tests.support.catalog import ensure_catalog
from tests.support.timing import until

pytestmark = pytest.mark.e2e


async def test_sigterm_finishes_in_flight_turns(
    cluster_factory: Any, mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    contacts = 60
    cluster = cluster_factory()
    cluster.start()
    api = Api(cluster)
    try:
        gql = api.gql(0)
        definition = wait_and_timer_flow()
        await ensure_catalog(gql, definition)
        flow_id = await publish(gql, definition)
        outcome = Outcome()
        numbers = phones(contacts)
        rng = random.Random()
        drivers = drive_all(api, mongo, cluster.db_name, flow_id, numbers, outcome, [0], rng)
        await until(lambda: len(outcome.acked_replies) >= contacts // 10, "the drivers under way", 30)
        process = cluster.procs[0].process
        acked_before = sum(len(v) for v in outcome.acked_replies.values())
        process.send_signal(signal.SIGTERM)
        began = time.monotonic()
        code = await asyncio.to_thread(process.wait, 30)
        stopped_in = time.monotonic() - began
        await asyncio.to_thread(cluster.start, 0)
        await asyncio.wait_for(drivers, timeout=60)
        docs = await all_ended(mongo, cluster.db_name, numbers, deadline=45)
        verdict = await verify(mongo, cluster.db_name, docs, outcome)
        print(
            f"\n[sigterm] contacts={contacts} exit={code} stopped_in={stopped_in:.1f}s"
            f" acked_before_term={acked_before} acked_inbound={verdict.inbound_acked}"
            f" missing={verdict.inbound_missing} applied_twice={verdict.inbound_applied_twice}"
            f" timers_fired={verdict.timers_fired} outbound_duplicates={verdict.outbound_duplicates}"
        )
        assert code == 0
        assert not verdict.problems, verdict.problems[:10]
        assert verdict.inbound_missing == 0 and verdict.inbound_applied_twice == 0
        assert verdict.timers_fired == contacts and verdict.timers_twice == 0
    finally:
        await api.aclose()
