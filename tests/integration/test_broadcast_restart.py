"""A broadcast survives a server restart half-way and still messages every eligible contact once."""

from __future__ import annotations

from datetime import timedelta

from server.runtime import Runtime
from tests.integration.broadcast_support import (
    CREATE,
    contact,
    create_template,
    finished,
    get,
    sends_per_phone,
)
from tests.integration.conftest import WORKSPACE, client_for
from tests.support.graphql import GraphQLClient, eventually


async def test_restart_in_the_middle_of_a_broadcast(
    runtime: Runtime, api_key: str, gql: GraphQLClient
) -> None:
    await create_template(gql, "restock", "UTILITY")
    now = runtime.clock.now()
    await runtime.services.audience.insert_many(
        [contact(WORKSPACE, f"+3469{i:07d}", now, opted_in=i % 7 != 0) for i in range(350)]
    )
    eligible = {f"+3469{i:07d}" for i in range(350) if i % 7 != 0}
    runner = runtime.triggers.runner
    runner.batch_size, runner.concurrency = 20, 4  # slow enough to stop it half-way
    created = (await gql(CREATE, i={"template": {"name": "restock"}, "segment": {"all": []}}))[
        "createBroadcast"
    ]
    bid = created["id"]
    await eventually(lambda: get(gql, bid), lambda b: b["counts"]["started"] >= 60, timeout=60)
    await runtime.stop()  # graceful: in-flight turns finish, the lease is released

    second = Runtime(runtime.settings)  # same store and Redis, new process state
    # Simulate the worst moments of a crash before starting: one recipient whose turn committed
    # but whose state was never written, and a lease still held by a process that is gone.
    client = second.database.collection("broadcast_recipients")  # outcomes (the audience is apart)
    half_done = await client.find_one({"broadcast_id": bid, "state": "started"})
    assert half_done is not None
    await client.delete_one({"_id": half_done["_id"]})  # queued again: a member with no outcome
    queued = await second.recipients.queued(bid, "", 1000)
    assert half_done["_id"] in {r["_id"] for r in queued}
    assert len(queued) > 1, "the broadcast finished before the restart; slow the runner down further"
    await second.database.collection("broadcasts").update_one(
        {"_id": bid}, {"$set": {"lease_owner": "proc_gone", "lease_until": now - timedelta(seconds=1)}}
    )
    await second.start()
    gql2 = client_for(second, api_key)
    try:
        done = await finished(gql2, bid)
        counts = done["counts"]
        assert done["status"] == "COMPLETED"
        assert (
            counts["started"] == len(eligible) and counts["sent"] == len(eligible) and counts["queued"] == 0
        )
        assert counts["skippedByReason"] == [{"reason": "NO_OPT_IN", "count": 350 - len(eligible)}]
        sends = await sends_per_phone(second, bid)
        assert set(sends) == eligible and set(sends.values()) == {1}  # everyone once, nobody twice
    finally:
        await gql2.http.aclose()
        await second.stop()
