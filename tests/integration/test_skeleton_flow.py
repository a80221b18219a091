"""The walking-skeleton flow end to end on the real store and Redis, through GraphQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from server.actors.events import TimerFired
from server.runtime import Runtime
from tests.integration.conftest import WORKSPACE, client_for, publish
from tests.support.clock import ShiftedClock
from tests.support.contacts import key_of
from tests.support.flows import skeleton_flow
from tests.support.graphql import GraphQLClient, GraphQLErrors, eventually

CONTACT = """query($p: String!) { contact(phone: $p) {
  phone tags windowOpen version
  runs { id status node endReason steps { node action outcome } }
} }"""
OUTBOX = """query($p: String!) { sandboxOutbox(phone: $p) { kind text buttons { id title } node } }"""


async def say(gql: GraphQLClient, phone: str, text: str | None = None, button: str | None = None) -> None:
    await gql(
        "mutation($p: String!, $t: String, $b: String) { sandboxInbound(phone: $p, text: $t, buttonId: $b) }",
        p=phone,
        t=text,
        b=button,
    )


async def start(gql: GraphQLClient, flow_id: str, phone: str) -> dict[str, Any]:
    data = await gql(
        "mutation($f: ID!, $p: String!) { startFlow(flowId: $f, phone: $p) { id status node waitingFor } }",
        f=flow_id,
        p=phone,
    )
    return data["startFlow"]


async def contact(gql: GraphQLClient, phone: str) -> dict[str, Any]:
    return (await gql(CONTACT, p=phone))["contact"]


async def test_button_path(gql: GraphQLClient) -> None:
    flow_id = await publish(gql, skeleton_flow(no_reply_after="1h"))
    phone = "+34600000001"
    await say(gql, phone, "hola")
    run = await start(gql, flow_id, phone)
    assert run["status"] == "WAITING" and run["node"] == "ask"
    assert run["waitingFor"]["kind"] == "reply"

    outbox = (await gql(OUTBOX, p=phone))["sandboxOutbox"]
    assert len(outbox) == 1
    assert outbox[0]["kind"] == "buttons"
    assert outbox[0]["text"] == "Hola , ¿te ayudamos?"
    assert [b["id"] for b in outbox[0]["buttons"]] == ["yes", "no"]

    await say(gql, phone, button="yes")
    state = await contact(gql, phone)
    assert state["tags"] == ["interested"]
    assert state["runs"][0]["status"] == "COMPLETED"
    assert [s["action"] for s in state["runs"][0]["steps"]] == [
        "started",
        "message_sent",
        "button",
        "tagged",
        "ended",
    ]
    missing = await gql("query($id: ID!) { run(id: $id) { steps { warnings } } }", id=run["id"])
    assert "first_name" in missing["run"]["steps"][1]["warnings"][0]


async def test_free_reply_path(gql: GraphQLClient) -> None:
    flow_id = await publish(gql, skeleton_flow(no_reply_after="1h"))
    phone = "+34600000002"
    await say(gql, phone, "hola")
    await start(gql, flow_id, phone)
    await say(gql, phone, "quiero saber el precio")
    state = await contact(gql, phone)
    assert state["tags"] == ["wrote"]
    assert state["runs"][0]["status"] == "COMPLETED"


async def test_no_reply_path_fires_timer(gql: GraphQLClient, clock: ShiftedClock) -> None:
    flow_id = await publish(gql, skeleton_flow(no_reply_after="PT1H"))
    phone = "+34600000003"
    await say(gql, phone, "hola")
    await start(gql, flow_id, phone)
    clock.advance(timedelta(hours=1))  # virtual time: the timer worker finds the timer due
    state = await eventually(lambda: contact(gql, phone), lambda c: c["runs"][0]["status"] == "COMPLETED")
    assert state["tags"] == ["cold"]
    assert [s["action"] for s in state["runs"][0]["steps"]][-3:] == ["no_reply", "tagged", "ended"]


async def test_stale_timer_after_reply_does_nothing(
    gql: GraphQLClient, runtime: Runtime, clock: ShiftedClock
) -> None:
    flow_id = await publish(gql, skeleton_flow(no_reply_after="PT1H"))
    phone = "+34600000004"
    await say(gql, phone, "hola")
    run = await start(gql, flow_id, phone)
    timer_id = run["waitingFor"]["timer_id"]
    await say(gql, phone, button="no")
    before = await contact(gql, phone)
    assert before["tags"] == ["not-interested"]

    assert runtime.actors is not None
    result = await runtime.actors.ask(await key_of(runtime, WORKSPACE, phone), TimerFired(timer_id))
    assert result.changed is False
    # The real arq job comes due as well and must find nothing: its turn runs and is acked.
    assert runtime.timers is not None and runtime.timer_worker is not None
    fired = runtime.timer_worker.fired
    clock.advance(timedelta(hours=1))
    await eventually(lambda: asyncio.sleep(0, runtime.timer_worker.fired), lambda n: n > fired)
    assert await runtime.redis.zscore(runtime.timers.queue_name, timer_id) is None
    after = await contact(gql, phone)
    assert after["tags"] == ["not-interested"]
    assert after["version"] == before["version"]
    assert len(after["runs"]) == 1 and after["runs"][0]["status"] == "COMPLETED"


async def test_two_contacts_in_parallel(gql: GraphQLClient) -> None:
    flow_id = await publish(gql, skeleton_flow(no_reply_after="1h"))
    first, second = "+34600000005", "+34600000006"
    await asyncio.gather(say(gql, first, "hola"), say(gql, second, "hola"))
    await asyncio.gather(start(gql, flow_id, first), start(gql, flow_id, second))
    await asyncio.gather(say(gql, first, button="yes"), say(gql, second, "otra cosa"))
    one, two = await asyncio.gather(contact(gql, first), contact(gql, second))
    assert one["tags"] == ["interested"] and two["tags"] == ["wrote"]
    assert len((await gql(OUTBOX, p=first))["sandboxOutbox"]) == 1
    assert len((await gql(OUTBOX, p=second))["sandboxOutbox"]) == 1


async def test_restart_mid_wait_resumes_the_run(runtime: Runtime, api_key: str, clock: ShiftedClock) -> None:
    gql = client_for(runtime, api_key)
    flow_id = await publish(gql, skeleton_flow(no_reply_after="PT1H"))
    replying, silent = "+34600000007", "+34600000008"
    for phone in (replying, silent):
        await say(gql, phone, "hola")
        await start(gql, flow_id, phone)
    await gql.http.aclose()
    await runtime.stop()

    restarted = Runtime(runtime.settings, clock=clock)
    await restarted.start()
    try:
        gql = client_for(restarted, api_key)
        await say(gql, replying, button="yes")
        assert (await contact(gql, replying))["tags"] == ["interested"]
        clock.advance(timedelta(hours=1))  # the silent contact's timer falls due after the restart
        state = await eventually(lambda: contact(gql, silent), lambda c: c["tags"] == ["cold"])
        assert state["runs"][0]["status"] == "COMPLETED"
        await gql.http.aclose()
    finally:
        await restarted.stop()


async def test_redelivered_inbound_is_applied_once(gql: GraphQLClient, runtime: Runtime) -> None:
    from server.operations.contacts import customer_says

    flow_id = await publish(gql, skeleton_flow(no_reply_after="1h"))
    phone = "+34600000009"
    await say(gql, phone, "hola")
    await start(gql, flow_id, phone)
    assert await customer_says(runtime.services, WORKSPACE, phone, "primera", None, provider_id="wamid.1")
    version = (await contact(gql, phone))["version"]
    assert not await customer_says(runtime.services, WORKSPACE, phone, "primera", None, provider_id="wamid.1")
    state = await contact(gql, phone)
    assert state["version"] == version and state["tags"] == ["wrote"]


async def test_simple_message_with_window_closed_is_not_sent(gql: GraphQLClient) -> None:
    flow_id = await publish(gql, skeleton_flow(no_reply_after="1h"))
    phone = "+34600000010"
    run = await start(gql, flow_id, phone)
    assert run["status"] == "FAILED"
    state = await contact(gql, phone)
    assert state["windowOpen"] is False
    assert state["runs"][0]["endReason"] == "WINDOW_CLOSED"
    assert (await gql(OUTBOX, p=phone))["sandboxOutbox"] == []


async def test_publish_refuses_errors_with_node_id(gql: GraphQLClient) -> None:
    flow = skeleton_flow()
    flow["nodes"][0]["buttons"][0]["next"] = "nowhere"
    data = await gql("mutation($d: JSON!) { importFlow(definition: $d) { id status } }", d=flow)
    with pytest.raises(GraphQLErrors) as failure:
        await gql("mutation($id: ID!) { publishFlow(id: $id) { id } }", id=data["importFlow"]["id"])
    error = failure.value.errors[0]
    assert error["extensions"]["code"] == "INVALID_FLOW"
    assert error["extensions"]["nodeId"] == "ask"
    assert "nowhere" in error["message"]


async def test_requests_without_a_valid_key_are_refused(runtime: Runtime, api_key: str) -> None:
    for key in (None, "konvo_not-a-key"):
        client = client_for(runtime, key)
        body = await client.raw("{ flows { id } }")
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        await client.http.aclose()


async def test_idle_actors_are_passivated_and_reactivated_from_the_store(
    gql: GraphQLClient, runtime: Runtime
) -> None:

    flow_id = await publish(gql, skeleton_flow(no_reply_after="1h"))
    phone = "+34600000011"
    await say(gql, phone, "hola")
    await start(gql, flow_id, phone)
    assert runtime.actors is not None and runtime.actors.active_count >= 1
    assert runtime.actors.passivate_idle(0) >= 1
    assert runtime.actors.active_count == 0
    await say(gql, phone, button="yes")
    assert (await contact(gql, phone))["tags"] == ["interested"]
    assert runtime.actors.active_count == 1
