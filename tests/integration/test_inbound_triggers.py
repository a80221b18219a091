"""Inbound triggers: keywords (exact/contains, accents and case ignored), catch-all, priorities, CRUD."""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import publish
from tests.integration.test_skeleton_flow import say
from tests.support.graphql import GraphQLClient, GraphQLErrors

CREATE = """mutation($i: InboundTriggerInput!) {
  createInboundTrigger(input: $i) { id flowId kind match keywords priority enabled } }"""
FLOWS = "query($p: String!) { contact(phone: $p) { runs { flowName status trigger } } }"


def reply_flow(name: str, waits: bool = False) -> dict[str, Any]:
    node: dict[str, Any] = {"id": "hi", "type": "message", "text": f"{name}!", "next": None}
    nodes = [node]
    if waits:
        node["on_reply"] = "done"
        node["no_reply"] = {"after": "1h", "next": None}
        nodes.append({"id": "done", "type": "tag", "add": ["welcomed"], "next": None})
    return {"name": name, "start": "hi", "nodes": nodes}


async def started(gql: GraphQLClient, phone: str) -> list[str]:
    contact = (await gql(FLOWS, p=phone))["contact"]
    return [r["flowName"] for r in contact["runs"]] if contact else []


async def test_keywords_catch_all_and_priorities(gql: GraphQLClient) -> None:
    prices = await publish(gql, reply_flow("Prices"))
    offers = await publish(gql, reply_flow("Offers"))
    welcome = await publish(gql, reply_flow("Welcome", waits=True))
    await gql(CREATE, i={"flowId": welcome, "kind": "ANY_MESSAGE", "priority": 0})
    await gql(
        CREATE, i={"flowId": offers, "keywords": ["oferta", "descuento"], "match": "CONTAINS", "priority": 5}
    )
    exact = (await gql(CREATE, i={"flowId": prices, "keywords": ["Precio"], "priority": 10}))[
        "createInboundTrigger"
    ]
    assert exact["kind"] == "KEYWORD" and exact["match"] == "EXACT" and exact["enabled"]

    await say(gql, "+34600300001", "  ¡PRECIÓ!  ")
    assert await started(gql, "+34600300001") == ["Prices"]
    await say(gql, "+34600300002", "¿Hay alguna OFERTA hoy?")
    assert await started(gql, "+34600300002") == ["Offers"]
    await say(gql, "+34600300003", "el precio con descuento")  # not exactly "precio": the contains rule wins
    assert await started(gql, "+34600300003") == ["Offers"]
    await say(gql, "+34600300004", "ofertas")  # whole words only: "ofertas" is not "oferta"
    assert await started(gql, "+34600300004") == ["Welcome"]

    # A run waiting for a reply takes the message; no trigger fires.
    await say(gql, "+34600300004", "precio")
    runs = (await gql(FLOWS, p="+34600300004"))["contact"]["runs"]
    assert [(r["flowName"], r["status"]) for r in runs] == [("Welcome", "COMPLETED")]
    # With no run waiting any more, the keyword starts its flow.
    await say(gql, "+34600300004", "precio")
    assert await started(gql, "+34600300004") == ["Welcome", "Prices"]
    assert (await gql(FLOWS, p="+34600300004"))["contact"]["runs"][-1]["trigger"]["keyword"] == "precio"

    listed = (await gql("{ inboundTriggers { flowId priority } }"))["inboundTriggers"]
    assert [t["priority"] for t in listed] == [10, 5, 0]


async def test_update_disable_and_delete(gql: GraphQLClient) -> None:
    prices = await publish(gql, reply_flow("Prices"))
    offers = await publish(gql, reply_flow("Offers"))
    trigger = (await gql(CREATE, i={"flowId": prices, "keywords": ["info"]}))["createInboundTrigger"]
    update = "mutation($id: ID!, $i: InboundTriggerInput!) { updateInboundTrigger(id: $id, input: $i) { flowId enabled keywords } }"
    changed = await gql(update, id=trigger["id"], i={"flowId": offers, "keywords": ["INFO", "ayuda"]})
    assert changed["updateInboundTrigger"] == {
        "flowId": offers,
        "enabled": True,
        "keywords": ["INFO", "ayuda"],
    }
    await say(gql, "+34600300101", "Ayuda")
    assert await started(gql, "+34600300101") == ["Offers"]
    await gql(update, id=trigger["id"], i={"enabled": False})
    await say(gql, "+34600300102", "ayuda")
    assert await started(gql, "+34600300102") == []
    assert (await gql("mutation($id: ID!) { deleteInboundTrigger(id: $id) }", id=trigger["id"]))[
        "deleteInboundTrigger"
    ]
    assert (await gql("{ inboundTriggers { id } }"))["inboundTriggers"] == []


async def test_bad_input_names_the_field(gql: GraphQLClient) -> None:
    prices = await publish(gql, reply_flow("Prices"))
    for data, field in [
        ({"flowId": prices}, "keywords"),
        ({"flowId": prices, "keywords": ["!!!"]}, "keywords"),
        ({"flowId": "flow_nope", "kind": "ANY_MESSAGE"}, "flowId"),
        ({"kind": "ANY_MESSAGE"}, "flowId"),
    ]:
        try:
            await gql(CREATE, i=data)
        except GraphQLErrors as exc:
            assert exc.errors[0]["extensions"].get("field") == field, exc.errors
        else:
            raise AssertionError(f"{data} was accepted")
