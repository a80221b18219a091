"""Each node type's semantics, run through GraphQL on the real store, Redis and arq timers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.integration.conftest import publish
from tests.integration.test_skeleton_flow import OUTBOX, contact, say
from tests.support.clock import ShiftedClock
from tests.support.graphql import GraphQLClient, eventually

RUN = "query($id: ID!) { run(id: $id) { status node endReason waitingFor steps { node action outcome detail warnings } } }"


def flow(name: str, start: str, *nodes: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "start": start, "nodes": list(nodes)}


async def start_with(gql: GraphQLClient, flow_id: str, phone: str, variables: Any = None) -> dict[str, Any]:
    data = await gql(
        "mutation($f: ID!, $p: String!, $v: JSON) { startFlow(flowId: $f, phone: $p, variables: $v) { id status } }",
        f=flow_id,
        p=phone,
        v=variables,
    )
    return data["startFlow"]


async def run_of(gql: GraphQLClient, run_id: str) -> dict[str, Any]:
    return (await gql(RUN, id=run_id))["run"]


async def outbox(gql: GraphQLClient, phone: str) -> list[dict[str, Any]]:
    return (await gql(OUTBOX, p=phone))["sandboxOutbox"]


async def test_opt_in_tags_variables_and_placeholders(gql: GraphQLClient) -> None:
    flow_id = await publish(
        gql,
        flow(
            "Actions",
            "optin",
            {"id": "optin", "type": "opt_in", "next": "add"},
            {"id": "add", "type": "tag", "add": ["lead", "vip"], "next": "remove"},
            {"id": "remove", "type": "tag", "remove": ["lead"], "next": "city"},
            {"id": "city", "type": "set_variable", "field": "city", "value": "Madrid", "next": "copy"},
            {
                "id": "copy",
                "type": "set_variable",
                "field": "home",
                "value": {"from": "variable", "var": "city"},
                "next": "say",
            },
            {
                "id": "say",
                "type": "message",
                "text": "{{contact.home}}: pedido {{trigger.order.id}} {{contact.nope}}",
                "next": None,
            },
        ),
    )
    phone = "+34600001001"
    await say(gql, phone, "hola")
    run = await start_with(gql, flow_id, phone, {"order": {"id": "A-17"}})
    assert run["status"] == "COMPLETED"
    state = (await gql("query($p: String!) { contact(phone: $p) { optedIn tags variables } }", p=phone))[
        "contact"
    ]
    assert state == {"optedIn": True, "tags": ["vip"], "variables": {"city": "Madrid", "home": "Madrid"}}
    assert [m["text"] for m in await outbox(gql, phone)] == ["Madrid: pedido A-17 "]
    steps = (await run_of(gql, run["id"]))["steps"]
    assert steps[-2]["warnings"] == ["placeholder {{contact.nope}} has no value; rendered empty"]


async def test_set_variable_from_reply_and_button(gql: GraphQLClient) -> None:
    flow_id = await publish(
        gql,
        flow(
            "Ask",
            "ask",
            {"id": "ask", "type": "message", "text": "¿Ciudad?", "on_reply": "save", "next": None},
            {
                "id": "save",
                "type": "set_variable",
                "field": "city",
                "value": {"from": "reply"},
                "next": "size",
            },
            {
                "id": "size",
                "type": "message",
                "text": "¿Talla?",
                "buttons": [
                    {"id": "S", "title": "S", "next": "save_size"},
                    {"id": "M", "title": "M", "next": "save_size"},
                ],
            },
            {
                "id": "save_size",
                "type": "set_variable",
                "field": "size",
                "value": {"from": "button"},
                "next": "echo",
            },
            {"id": "echo", "type": "message", "text": "{{run.reply}} en {{contact.city}}", "next": None},
        ),
    )
    phone = "+34600001002"
    await say(gql, phone, "hola")
    await start_with(gql, flow_id, phone)
    await say(gql, phone, "Sevilla")
    await say(gql, phone, button="M")
    state = (await gql("query($p: String!) { contact(phone: $p) { variables } }", p=phone))["contact"]
    assert state["variables"] == {"city": "Sevilla", "size": "M"}
    assert (await outbox(gql, phone))[-1]["text"] == "M en Sevilla"


async def test_condition_takes_the_first_matching_branch(gql: GraphQLClient) -> None:
    flow_id = await publish(
        gql,
        flow(
            "Route",
            "route",
            {
                "id": "route",
                "type": "condition",
                "branches": [
                    {"name": "VIP", "segment": {"tag": "vip"}, "next": "tag_vip"},
                    {
                        "name": "Madrid",
                        "segment": {"var": "city", "op": "eq", "value": "Madrid"},
                        "next": "tag_mad",
                    },
                ],
                "otherwise": "tag_other",
            },
            {"id": "tag_vip", "type": "tag", "add": ["went-vip"], "next": None},
            {"id": "tag_mad", "type": "tag", "add": ["went-madrid"], "next": None},
            {"id": "tag_other", "type": "tag", "add": ["went-other"], "next": None},
        ),
    )
    setup = await publish(
        gql,
        flow(
            "Setup",
            "t",
            {"id": "t", "type": "tag", "add": ["vip"], "next": "c"},
            {"id": "c", "type": "set_variable", "field": "city", "value": "Madrid", "next": None},
        ),
    )
    vip, plain = "+34600001003", "+34600001004"
    await start_with(gql, setup, vip)
    await start_with(gql, flow_id, vip)
    await start_with(gql, flow_id, plain)
    assert "went-vip" in (await contact(gql, vip))["tags"]
    assert (await contact(gql, plain))["tags"] == ["went-other"]


async def test_delay_sends_the_next_message_even_if_the_customer_writes(
    gql: GraphQLClient, clock: ShiftedClock
) -> None:
    flow_id = await publish(
        gql,
        flow(
            "Delay",
            "hello",
            {"id": "hello", "type": "message", "text": "Un momento", "next": "wait"},
            {"id": "wait", "type": "delay", "for": "PT1H", "next": "later"},
            {"id": "later", "type": "message", "text": "Ya está", "next": None},
        ),
    )
    phone = "+34600001005"
    await say(gql, phone, "hola")
    run = await start_with(gql, flow_id, phone)
    assert run["status"] == "WAITING"
    await say(gql, phone, "¿sigues ahí?")
    assert (await run_of(gql, run["id"]))["node"] == "wait"
    clock.advance(timedelta(hours=1))
    done = await eventually(lambda: run_of(gql, run["id"]), lambda r: r["status"] == "COMPLETED")
    assert [s["action"] for s in done["steps"]][-3:] == ["timer", "message_sent", "ended"]
    assert [m["text"] for m in await outbox(gql, phone)] == ["Un momento", "Ya está"]


async def test_delay_until_is_read_in_the_workspace_time_zone(gql: GraphQLClient) -> None:
    flow_id = await publish(
        gql,
        flow(
            "Until",
            "wait",
            {"id": "wait", "type": "delay", "until": "2031-07-01T10:00", "next": None},
        ),
    )
    run = await start_with(gql, flow_id, "+34600001006")
    waiting = (await run_of(gql, run["id"]))["waitingFor"]
    due = datetime.fromisoformat(waiting["due_at"])
    assert due == datetime(2031, 7, 1, 8, 0, tzinfo=UTC)  # Europe/Madrid is UTC+2 in July


async def test_connect_flow_leaves_this_run_and_starts_the_other(gql: GraphQLClient) -> None:
    await publish(
        gql,
        flow(
            "Second",
            "hi",
            {
                "id": "hi",
                "type": "message",
                "text": "Segundo flujo",
                "on_reply": None,
                "no_reply": {"after": "1h", "next": None},
            },
        ),
    )
    first = await publish(
        gql,
        flow(
            "First",
            "go",
            {"id": "go", "type": "connect_flow", "flow": "Second"},
        ),
    )
    phone = "+34600001007"
    await say(gql, phone, "hola")
    run = await start_with(gql, first, phone)
    assert run["status"] == "COMPLETED"
    assert (await run_of(gql, run["id"]))["endReason"] == "connected"
    runs = (await contact(gql, phone))["runs"]
    assert [r["status"] for r in runs] == ["COMPLETED", "WAITING"]
    assert [m["text"] for m in await outbox(gql, phone)] == ["Segundo flujo"]


async def test_template_node_sends_and_waits_for_quick_reply(gql: GraphQLClient) -> None:
    flow_id = await publish(
        gql,
        flow(
            "Cart",
            "remind",
            {
                "id": "remind",
                "type": "template",
                "template": "cart_reminder",
                "language": "es",
                "params": {"body": ["{{contact.first_name}}", "{{trigger.cart_url}}"]},
                "buttons": [{"id": "buy", "next": "thanks"}],
            },
            {"id": "thanks", "type": "tag", "add": ["bought"], "next": None},
        ),
    )
    phone = "+34600001008"
    await start_with(gql, flow_id, phone, {"cart_url": "https://shop.example/c/1"})
    sent = await gql("query($p: String!) { sandboxOutbox(phone: $p) { kind template } }", p=phone)
    assert sent["sandboxOutbox"] == [
        {
            "kind": "template",
            "template": {
                "name": "cart_reminder",
                "language": "es",
                "params": {"body": ["", "https://shop.example/c/1"]},
            },
        }
    ]
    await say(gql, phone, button="buy")
    assert (await contact(gql, phone))["tags"] == ["bought"]


async def test_window_closed_follows_the_failure_path(gql: GraphQLClient) -> None:
    flow_id = await publish(
        gql,
        flow(
            "Closed",
            "msg",
            {"id": "msg", "type": "message", "text": "Hola", "on_failure": "mark", "next": None},
            {"id": "mark", "type": "tag", "add": ["unreachable"], "next": None},
        ),
    )
    phone = "+34600001009"
    run = await start_with(gql, flow_id, phone)
    assert run["status"] == "COMPLETED"
    steps = (await run_of(gql, run["id"]))["steps"]
    assert steps[1]["outcome"] == "WINDOW_CLOSED"
    assert (await contact(gql, phone))["tags"] == ["unreachable"]
    assert await outbox(gql, phone) == []


async def test_assign_hands_the_contact_to_an_agent(gql: GraphQLClient) -> None:
    flow_id = await publish(
        gql,
        flow(
            "Assign",
            "to_agent",
            {"id": "to_agent", "type": "assign", "agent": "ana@shop.example", "next": None},
        ),
    )
    phone = "+34600001010"
    await start_with(gql, flow_id, phone)
    state = (
        await gql(
            "query($p: String!) { contact(phone: $p) { assignedAgentId assignedAgent { id email } } }",
            p=phone,
        )
    )["contact"]
    agent = state["assignedAgent"]
    assert agent["email"] == "ana@shop.example" and state["assignedAgentId"] == agent["id"]


async def test_a_reply_that_does_not_fit_the_field_type_is_handled(gql: GraphQLClient) -> None:
    await gql('mutation { createField(name: "age", type: NUMBER) { id } }')
    await gql('mutation { createField(name: "size", type: FIXED, options: ["S", "M", "L"]) { id } }')
    flow_id = await publish(
        gql,
        flow(
            "Typed",
            "ask_age",
            {"id": "ask_age", "type": "message", "text": "¿Edad?", "on_reply": "save_age"},
            {
                "id": "save_age",
                "type": "set_variable",
                "field": "age",
                "value": {"from": "reply"},
                "on_invalid": "again",
                "retries": 0,  # straight to the flow's own re-ask message
                "next": "ask_size",
            },
            {
                "id": "again",
                "type": "message",
                "text": "Escribe tu edad en números, por favor",
                "on_reply": "save_age",
            },
            {"id": "ask_size", "type": "message", "text": "¿Talla?", "on_reply": "save_size"},
            {
                "id": "save_size",
                "type": "set_variable",
                "field": "size",
                "value": {"from": "reply"},
                "next": None,
            },
        ),
    )
    phone = "+34600001011"
    await say(gql, phone, "hola")
    run = await start_with(gql, flow_id, phone)
    await say(gql, phone, "treinta")
    assert (await run_of(gql, run["id"]))["node"] == "again"
    await say(gql, phone, "31")
    await say(gql, phone, "xl")  # not an option: not saved; the question is asked again, with them
    assert (await run_of(gql, run["id"]))["node"] == "ask_size"
    await say(gql, phone, "m")
    done = await run_of(gql, run["id"])
    assert done["status"] == "COMPLETED"
    rejected = [s for s in done["steps"] if s["outcome"] == "INVALID_VALUE"]
    assert [s["node"] for s in rejected] == ["save_age", "save_size"]
    assert "NUMBER" in rejected[0]["detail"]["why"]
    state = (await gql("query($p: String!) { contact(phone: $p) { variables } }", p=phone))["contact"]
    assert state["variables"] == {"age": 31, "size": "M"}
    texts = [m["text"] for m in await outbox(gql, phone)]
    assert texts[1] == "Escribe tu edad en números, por favor"
    assert texts[-2:] == ["¿Talla?", "¿Talla?\n\nS / M / L"]
