"""Every example flow in examples/flows, imported with its catalog and driven to each of its ends.

The customer is played through ``sandboxInbound``; timers (hours and days long) are fired
through the same actor event the arq job sends when they come due.
"""

from __future__ import annotations

from typing import Any

import pytest

from server.actors.events import TimerFired
from server.dev.seed import example_flows, load_example_catalog
from server.runtime import Runtime
from tests.integration.conftest import WORKSPACE, publish
from tests.integration.test_nodes import outbox, start_with
from tests.integration.test_skeleton_flow import say
from tests.support.contacts import key_of
from tests.support.graphql import GraphQLClient

STATE = "query($p: String!) { contact(phone: $p) { tags variables optedIn agent { email } runs { status node endReason } } }"


@pytest.fixture
async def examples(gql: GraphQLClient, runtime: Runtime) -> dict[str, str]:
    await load_example_catalog(runtime.services, WORKSPACE)
    return {definition["name"]: await publish(gql, definition) for definition in example_flows()}


async def state(gql: GraphQLClient, phone: str) -> dict[str, Any]:
    return (await gql(STATE, p=phone))["contact"]


async def fire_pending_timer(runtime: Runtime, phone: str) -> None:
    """Fire the contact's one pending timer as arq would when it comes due."""
    key = await key_of(runtime, WORKSPACE, phone)
    document = await runtime.contacts.load(key)
    assert document is not None and len(document["timers"]) == 1, document and document["timers"]
    assert runtime.actors is not None
    result = await runtime.actors.ask(key, TimerFired(document["timers"][0]["id"]))
    assert result.changed


def last_run(contact: dict[str, Any]) -> dict[str, Any]:
    return contact["runs"][-1]


CART = {"cart_url": "https://shop.example/c/9"}


async def opt_in(gql: GraphQLClient, *phones: str) -> None:
    """The cart reminders are MARKETING templates: only contacts who opted in receive them."""
    for phone in phones:
        await gql("mutation($p: String!) { setOptIn(phone: $p, optedIn: true) { optedIn } }", p=phone)


async def test_abandoned_cart_bought_at_once(gql: GraphQLClient, examples: dict[str, str]) -> None:
    phone = "+34600002001"
    await opt_in(gql, phone)
    await start_with(gql, examples["Abandoned cart"], phone, CART)
    await say(gql, phone, button="buy")
    contact = await state(gql, phone)
    assert contact["tags"] == ["cart-recovered"] and last_run(contact)["status"] == "COMPLETED"
    assert [m["kind"] for m in await outbox(gql, phone)] == ["template", "text"]


async def test_abandoned_cart_goes_cold(
    gql: GraphQLClient, runtime: Runtime, examples: dict[str, str]
) -> None:
    phone = "+34600002002"
    await opt_in(gql, phone)
    await start_with(gql, examples["Abandoned cart"], phone, CART)
    await fire_pending_timer(runtime, phone)
    contact = await state(gql, phone)
    assert contact["tags"] == ["cart-cold"] and last_run(contact)["status"] == "COMPLETED"


async def test_abandoned_cart_later_then_last_call(
    gql: GraphQLClient, runtime: Runtime, examples: dict[str, str]
) -> None:
    bought, ignored = "+34600002003", "+34600002004"
    await opt_in(gql, bought, ignored)
    for phone in (bought, ignored):
        await start_with(gql, examples["Abandoned cart"], phone, CART)
        await say(gql, phone, button="later")
        await fire_pending_timer(runtime, phone)  # the day's delay
        assert last_run(await state(gql, phone))["node"] == "last_call"
    await say(gql, bought, button="buy")
    assert (await state(gql, bought))["tags"] == ["cart-recovered"]
    await fire_pending_timer(runtime, ignored)
    assert (await state(gql, ignored))["tags"] == ["cart-cold"]
    assert len(await outbox(gql, ignored)) == 2


async def test_order_update_happy_customer(
    gql: GraphQLClient, runtime: Runtime, examples: dict[str, str]
) -> None:
    phone = "+34600002005"
    order = {"order_id": "A-100", "tracking_url": "https://track.example/A-100"}
    run = await start_with(gql, examples["Order update with feedback"], phone, order)
    assert run["status"] == "WAITING"
    await fire_pending_timer(runtime, phone)
    await say(gql, phone, button="good")
    contact = await state(gql, phone)
    assert contact["variables"] == {"satisfied": True} and contact["tags"] == ["happy-customer"]


async def test_order_update_unhappy_customer_explains(
    gql: GraphQLClient, runtime: Runtime, examples: dict[str, str]
) -> None:
    phone = "+34600002006"
    await start_with(gql, examples["Order update with feedback"], phone, {"order_id": "A-101"})
    await fire_pending_timer(runtime, phone)
    await say(gql, phone, button="bad")
    await say(gql, phone, "Llegó tarde")
    contact = await state(gql, phone)
    assert contact["variables"] == {"feedback": "Llegó tarde"} and contact["tags"] == ["needs-follow-up"]


async def test_order_update_unhappy_customer_silent(
    gql: GraphQLClient, runtime: Runtime, examples: dict[str, str]
) -> None:
    phone = "+34600002007"
    await start_with(gql, examples["Order update with feedback"], phone, {"order_id": "A-102"})
    await fire_pending_timer(runtime, phone)
    await say(gql, phone, button="bad")
    await fire_pending_timer(runtime, phone)
    assert (await state(gql, phone))["tags"] == ["needs-follow-up"]


async def test_order_update_no_feedback(
    gql: GraphQLClient, runtime: Runtime, examples: dict[str, str]
) -> None:
    phone = "+34600002008"
    await start_with(gql, examples["Order update with feedback"], phone, {"order_id": "A-103"})
    await fire_pending_timer(runtime, phone)
    await fire_pending_timer(runtime, phone)
    contact = await state(gql, phone)
    assert contact["tags"] == [] and last_run(contact)["status"] == "COMPLETED"


async def test_vip_routing_each_branch(gql: GraphQLClient, examples: dict[str, str]) -> None:
    vip, spender, regular = "+34600002009", "+34600002010", "+34600002011"
    for phone in (vip, spender, regular):
        await say(gql, phone, "hola")
    setup = await publish(
        gql,
        {"name": "Setup", "start": "t", "nodes": [{"id": "t", "type": "tag", "add": ["vip"], "next": None}]},
    )
    await start_with(gql, setup, vip)
    spend = await publish(
        gql,
        {
            "name": "Spend",
            "start": "s",
            "nodes": [
                {"id": "s", "type": "set_variable", "field": "total_spent", "value": "900", "next": None}
            ],
        },
    )
    await start_with(gql, spend, spender)
    for phone in (vip, spender, regular):
        await start_with(gql, examples["VIP routing"], phone)
    for phone in (vip, spender):
        contact = await state(gql, phone)
        assert contact["agent"]["email"] == "ana@shop.example" and "vip" in contact["tags"]
        assert (await outbox(gql, phone))[-1]["text"].endswith("te atiende Ana personalmente.")
    assert (await state(gql, spender))["variables"] == {"total_spent": 900}
    contact = await state(gql, regular)
    assert contact["agent"] is None
    assert (await outbox(gql, regular))[-1]["text"].startswith("¡Gracias por escribir!")


async def test_optin_collection_yes_no_and_silence(
    gql: GraphQLClient, runtime: Runtime, examples: dict[str, str]
) -> None:
    yes, no, silent = "+34600002012", "+34600002013", "+34600002014"
    for phone in (yes, no, silent):
        await say(gql, phone, "hola")
        await start_with(gql, examples["Opt-in collection"], phone)
    await say(gql, yes, button="yes")
    await say(gql, no, button="no")
    await fire_pending_timer(runtime, silent)
    accepted = await state(gql, yes)
    assert accepted["optedIn"] is True and accepted["variables"] == {"optin_source": "whatsapp"}
    refused = await state(gql, no)
    assert refused["optedIn"] is False and refused["tags"] == ["no-marketing"]
    quiet = await state(gql, silent)
    assert quiet["optedIn"] is False and last_run(quiet)["status"] == "COMPLETED"
