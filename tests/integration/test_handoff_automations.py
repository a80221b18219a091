"""While an agent owns a conversation, no automation writes to the contact (unless a flow opts out).

``startFlow``, webhook triggers, keyword triggers and flow broadcasts each record why nothing was
sent: a cancelled run with ``CONTACT_WITH_AGENT`` (``not_started`` step), or a skipped broadcast
recipient with that reason. A flow with ``settings.runs_while_assigned`` still runs.
"""

from __future__ import annotations

from typing import Any

from server.runtime import Runtime
from tests.integration.broadcast_support import CREATE as CREATE_BROADCAST
from tests.integration.broadcast_support import finished
from tests.integration.conftest import client_for, publish
from tests.integration.test_assignment import ASSIGN, RELEASE, agents
from tests.integration.test_inbound_triggers import CREATE as CREATE_INBOUND
from tests.integration.test_nodes import outbox, start_with
from tests.integration.test_skeleton_flow import say
from tests.integration.test_webhook_triggers import make_trigger, post, signed
from tests.support.graphql import GraphQLClient, eventually

RUNS = "query($p: String!) { contact(phone: $p) { runs { flowName status endReason steps { action outcome } } } }"


def order_flow(name: str, **settings: Any) -> dict[str, Any]:
    return {
        "name": name,
        "start": "notify",
        "settings": settings,
        "nodes": [
            {"id": "notify", "type": "template", "template": "order_ready", "language": "es", "next": None}
        ],
    }


async def runs_of(gql: GraphQLClient, phone: str) -> list[dict[str, Any]]:
    return (await gql(RUNS, p=phone))["contact"]["runs"]


async def with_agent(gql: GraphQLClient, phone: str) -> None:
    ids = await agents(gql, f"ana+{phone[-4:]}@shop.example")
    await say(gql, phone, "hola")
    await gql(ASSIGN, p=phone, a=next(iter(ids.values())))


def skipped(run: dict[str, Any]) -> bool:
    return (
        run["status"] == "CANCELLED"
        and run["endReason"] == "CONTACT_WITH_AGENT"
        and run["steps"][0] == {"action": "not_started", "outcome": "CONTACT_WITH_AGENT"}
    )


async def test_start_flow_is_skipped_while_assigned_and_runs_after_release(gql: GraphQLClient) -> None:
    flow_id = await publish(gql, order_flow("Offer"))
    phone = "+34600400001"
    await with_agent(gql, phone)
    run = await start_with(gql, flow_id, phone)
    assert run["status"] == "CANCELLED"
    assert skipped((await runs_of(gql, phone))[-1]) and await outbox(gql, phone) == []

    await gql(RELEASE, p=phone)
    assert (await start_with(gql, flow_id, phone))["status"] == "COMPLETED"
    assert [m["kind"] for m in await outbox(gql, phone)] == ["template"]


async def test_a_flow_that_runs_while_assigned_still_goes_out(gql: GraphQLClient) -> None:
    flow_id = await publish(gql, order_flow("Order confirmation", runs_while_assigned=True))
    phone = "+34600400002"
    await with_agent(gql, phone)
    assert (await start_with(gql, flow_id, phone))["status"] == "COMPLETED"
    assert [m["kind"] for m in await outbox(gql, phone)] == ["template"]


async def test_webhook_trigger_records_the_skip(gql: GraphQLClient, runtime: Runtime, api_key: str) -> None:
    flow_id = await publish(gql, order_flow("Shipping"))
    confirm_id = await publish(gql, order_flow("Confirmation", runs_while_assigned=True))
    phone = "+34600400003"
    await with_agent(gql, phone)
    http = client_for(runtime, api_key).http
    try:
        for target, order in ((flow_id, 7001), (confirm_id, 7002)):
            trigger = await make_trigger(gql, target, {"phone": "customer.phone", "idempotency_key": "id"})
            body, headers = signed(trigger, {"id": order, "customer": {"phone": phone}})
            assert (await post(http, trigger, body, headers)).status_code == 202
    finally:
        await http.aclose()
    runs = await eventually(lambda: runs_of(gql, phone), lambda found: len(found) == 2)
    by_flow = {r["flowName"]: r for r in runs}
    assert skipped(by_flow["Shipping"]) and by_flow["Confirmation"]["status"] == "COMPLETED"
    assert len(await outbox(gql, phone)) == 1
    # The skipped request counts as applied: recovery will not retry it into a message later.
    await eventually(lambda: runtime.services.hook_requests.unapplied(runtime.clock.now()), lambda p: p == [])


async def test_keyword_trigger_records_the_skip_and_catch_all_stays_quiet(gql: GraphQLClient) -> None:
    offers = await publish(gql, order_flow("Offers"))
    welcome = await publish(gql, order_flow("Welcome"))
    await gql(CREATE_INBOUND, i={"flowId": offers, "keywords": ["oferta"], "priority": 5})
    await gql(CREATE_INBOUND, i={"flowId": welcome, "kind": "ANY_MESSAGE", "priority": 0})
    phone = "+34600400004"
    await say(gql, phone, "buenas")  # the catch-all greets a contact nobody owns
    assert [r["flowName"] for r in await runs_of(gql, phone)] == ["Welcome"]
    ids = await agents(gql, "bea@shop.example")
    await gql(ASSIGN, p=phone, a=ids["bea@shop.example"])
    await say(gql, phone, "¿alguna oferta?")  # a message for Bea, not a new run...
    await say(gql, phone, "Oferta")  # ...and a keyword: recorded, not sent
    runs = await runs_of(gql, phone)
    assert [r["flowName"] for r in runs] == ["Welcome", "Offers"] and skipped(runs[-1])
    assert len(await outbox(gql, phone)) == 1  # only the greeting from before


async def test_broadcast_skips_recipients_with_an_agent(gql: GraphQLClient, runtime: Runtime) -> None:
    flow_id = await publish(gql, order_flow("Restock"))
    confirm_id = await publish(gql, order_flow("Restock notice", runs_while_assigned=True))
    await gql('mutation { createTag(name: "restock", kind: MARKETING) { id } }')
    free, owned = "+34600400005", "+34600400006"
    for phone in (free, owned):
        await gql('mutation($p: String!) { tagContact(phone: $p, tag: "restock") { id } }', p=phone)
    await with_agent(gql, owned)
    segment = {"tag": "restock"}
    created = await gql(CREATE_BROADCAST, i={"flowId": flow_id, "segment": segment, "requireOptIn": False})
    done = await finished(gql, created["createBroadcast"]["id"])
    assert done["counts"]["started"] == 1 and done["counts"]["skipped"] == 1
    assert done["counts"]["skippedByReason"] == [{"reason": "CONTACT_WITH_AGENT", "count": 1}]
    assert await outbox(gql, owned) == [] and len(await outbox(gql, free)) == 1

    created = await gql(CREATE_BROADCAST, i={"flowId": confirm_id, "segment": segment, "requireOptIn": False})
    done = await finished(gql, created["createBroadcast"]["id"])
    assert done["counts"]["started"] == 2 and done["counts"]["skipped"] == 0
    assert len(await outbox(gql, owned)) == 1
