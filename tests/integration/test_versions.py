"""Publishing freezes versions; runs finish on theirs unless the publish says exit; archive stops starts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from server.graphql.context import Context
from server.graphql.schema import schema
from server.runtime import Runtime
from tests.integration.conftest import publish
from tests.integration.test_skeleton_flow import contact, say, start
from tests.support.flows import skeleton_flow
from tests.support.graphql import GraphQLClient, GraphQLErrors, eventually

PUBLISH = "mutation($id: ID!, $p: InFlightPolicy!) { publishFlow(id: $id, inFlight: $p) { activeVersion } }"


async def republish(gql: GraphQLClient, flow_id: str, text: str, policy: str) -> int:
    definition = skeleton_flow(no_reply_after="1h")
    definition["nodes"][0]["text"] = text
    await gql(
        "mutation($id: ID!, $d: JSON!) { updateFlowDraft(id: $id, definition: $d) { id } }",
        id=flow_id,
        d=definition,
    )
    return (await gql(PUBLISH, id=flow_id, p=policy))["publishFlow"]["activeVersion"]


async def test_runs_finish_on_their_version(gql: GraphQLClient) -> None:
    flow_id = await publish(gql, skeleton_flow(no_reply_after="1h"))
    old, new = "+34600000101", "+34600000102"
    for phone in (old, new):
        await say(gql, phone, "hola")
    await start(gql, flow_id, old)
    assert await republish(gql, flow_id, "Versión dos", "FINISH") == 2
    second = await start(gql, flow_id, new)
    assert second["status"] == "WAITING"

    await say(gql, old, button="yes")
    runs = (
        await gql(
            "query($f: ID!) { runs(flowId: $f) { edges { node { version status phone } } } }", f=flow_id
        )
    )["runs"]["edges"]
    by_phone = {e["node"]["phone"]: e["node"] for e in runs}
    assert by_phone[old] == {"version": 1, "status": "COMPLETED", "phone": old}
    assert by_phone[new] == {"version": 2, "status": "WAITING", "phone": new}
    versions = (
        await gql("query($id: ID!) { flow(id: $id) { versions { version definition } } }", id=flow_id)
    )["flow"]["versions"]
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[1]["definition"]["nodes"][0]["text"] == "Versión dos"


async def test_publish_with_exit_ends_runs_in_flight(gql: GraphQLClient) -> None:
    flow_id = await publish(gql, skeleton_flow(no_reply_after="1h"))
    phones = [f"+3460000020{i}" for i in range(3)]
    for phone in phones:
        await say(gql, phone, "hola")
        await start(gql, flow_id, phone)
    await republish(gql, flow_id, "Nueva", "EXIT")
    for phone in phones:
        run = (await contact(gql, phone))["runs"][0]
        assert run["status"] == "CANCELLED" and run["endReason"] == "version_replaced"


async def test_archived_flow_does_not_start(gql: GraphQLClient) -> None:
    flow_id = await publish(gql, skeleton_flow())
    await gql("mutation($id: ID!) { archiveFlow(id: $id) { status } }", id=flow_id)
    with pytest.raises(GraphQLErrors) as failure:
        await start(gql, flow_id, "+34600000301")
    assert failure.value.codes == ["INVALID_INPUT"]
    assert "archived" in str(failure.value)


async def test_a_new_run_supersedes_the_waiting_one(gql: GraphQLClient) -> None:
    flow_id = await publish(gql, skeleton_flow(no_reply_after="1h"))
    phone = "+34600000401"
    await say(gql, phone, "hola")
    first = await start(gql, flow_id, phone)
    await start(gql, flow_id, phone)
    runs = {r["id"]: r for r in (await contact(gql, phone))["runs"]}
    assert runs[first["id"]]["status"] == "CANCELLED"
    assert runs[first["id"]]["endReason"] == "superseded"
    assert sorted(r["status"] for r in runs.values()) == ["CANCELLED", "WAITING"]


async def test_supersede_can_be_turned_off(gql: GraphQLClient) -> None:
    definition = skeleton_flow("Parallel", no_reply_after="1h")
    definition["settings"] = {"supersede": False}
    flow_id = await publish(gql, definition)
    phone = "+34600000402"
    await say(gql, phone, "hola")
    await start(gql, flow_id, phone)
    await start(gql, flow_id, phone)
    assert [r["status"] for r in (await contact(gql, phone))["runs"]] == ["WAITING", "WAITING"]


async def test_runs_are_paginated_newest_first(gql: GraphQLClient) -> None:
    flow_id = await publish(gql, skeleton_flow(no_reply_after="1h"))
    phones = [f"+3460000050{i}" for i in range(5)]
    for phone in phones:
        await say(gql, phone, "hola")
        await start(gql, flow_id, phone)
    query = """query($f: ID!, $a: String) { runs(flowId: $f, first: 2, after: $a) {
      edges { cursor node { phone } } pageInfo { hasNextPage endCursor } } }"""
    seen: list[str] = []
    after = None
    while True:
        page = (await gql(query, f=flow_id, a=after))["runs"]
        seen += [e["node"]["phone"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == list(reversed(phones))
    with pytest.raises(GraphQLErrors) as failure:
        await gql("query { runs(first: 5000) { edges { cursor } } }")
    assert failure.value.codes == ["INVALID_INPUT"]


async def test_run_updated_streams_each_change(gql: GraphQLClient, runtime: Runtime, api_key: str) -> None:
    flow_id = await publish(gql, skeleton_flow(no_reply_after="1h"))
    phone = "+34600000601"
    await say(gql, phone, "hola")
    context = Context(
        services=runtime.services, key_guard=runtime.key_guard, imports=runtime.contact_services.imports
    )
    assert await context.authenticate(f"Bearer {api_key}")
    stream: Any = await schema.subscribe(
        "subscription($f: ID!) { runUpdated(flowId: $f) { status node phone } }",
        variable_values={"f": flow_id},
        context_value=context,
    )
    received: list[dict[str, Any]] = []

    async def collect() -> None:
        async for result in stream:
            assert not result.errors, result.errors
            received.append(result.data["runUpdated"])
            if len(received) == 2:
                return

    registered = runtime.pubsub.subscriber_count
    collector = asyncio.create_task(collect())
    # Act once the subscription is registered (a condition, not a fixed sleep).
    await eventually(lambda: asyncio.sleep(0, runtime.pubsub.subscriber_count), lambda n: n > registered)
    await start(gql, flow_id, phone)
    await say(gql, phone, button="yes")
    await asyncio.wait_for(collector, timeout=10)
    assert received == [
        {"status": "WAITING", "node": "ask", "phone": phone},
        {"status": "COMPLETED", "node": None, "phone": phone},
    ]
