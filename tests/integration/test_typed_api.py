"""Issue 17, gap 5: consistent types through GraphQL.

``Contact.assignedAgent`` is the ``Agent`` (``assignedAgentId`` its id), as on conversations;
``Flow.definition`` is the flow document typed node by node (one GraphQL type per node kind)
and mirrors the JSON ``draft`` one to one; the diagram names edges by button titles, branch
names and the flows a ``connect_flow`` starts.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from graphql import GraphQLInterfaceType, GraphQLObjectType, GraphQLType, get_named_type

from server.dev.seed import example_flows
from server.graphql.schema import schema
from server.machines.definition import parse_flow
from tests.integration.conftest import publish
from tests.support.catalog import ensure_catalog
from tests.support.graphql import GraphQLClient

# The example of API.md "Flow documents" (docs/flows.md), as a frontend would import it.
API_EXAMPLE: dict[str, Any] = {
    "name": "Abandoned cart",
    "start": "remind",
    "nodes": [
        {
            "id": "remind",
            "type": "template",
            "template": "cart_reminder",
            "language": "es",
            "params": {"body": ["{{contact.first_name}}", "{{trigger.cart_url}}"]},
            "buttons": [{"id": "buy", "next": "thanks"}, {"id": "later", "next": "wait_day"}],
            "no_reply": {"after": "2h", "next": "tag_cold"},
        },
        {
            "id": "thanks",
            "type": "message",
            "text": "Gracias {{contact.first_name}}!",
            "buttons": [{"id": "yes", "title": "Por supuesto!", "next": "optin"}],
            "on_reply": "ask_city",
            "next": None,
        },
        {"id": "optin", "type": "opt_in", "next": "ask_city"},
        {
            "id": "ask_city",
            "type": "message",
            "text": "¿De qué ciudad eres?",
            "on_reply": "save_city",
            "no_reply": {"after": "1d", "next": None},
        },
        {
            "id": "save_city",
            "type": "set_variable",
            "field": "city",
            "value": {"from": "reply"},
            "next": "route",
        },
        {
            "id": "route",
            "type": "condition",
            "branches": [{"name": "VIP", "segment": {"tag": "vip"}, "next": "to_agent"}],
            "otherwise": "tag_cold",
        },
        {"id": "to_agent", "type": "assign", "agent": "ana@shop.example", "next": None},
        {"id": "wait_day", "type": "delay", "for": "1d", "next": "remind_again"},
        {"id": "remind_again", "type": "connect_flow", "flow": "Second reminder"},
        {"id": "tag_cold", "type": "tag", "add": ["cart-cold"], "remove": [], "next": None},
    ],
}

# Every other shape the document allows: media, short forms, objects, a fixed delay, a team.
SHAPES: dict[str, Any] = {
    "name": "Every shape",
    "start": "pic",
    "description": "one of each",
    "settings": {"supersede": False, "runs_while_assigned": True},
    "nodes": [
        {
            "id": "pic",
            "type": "message",
            "media": {
                "kind": "document",
                "url": "https://cdn.example/f.pdf",
                "caption": "Tu factura",
                "filename": "f.pdf",
            },
            "on_failure": "promo",
            "next": "promo",
        },
        {
            "id": "promo",
            "type": "template",
            "template": "promo_header",
            "params": {
                "header": "https://cdn.example/banner.jpg",
                "body": [42],
                "buttons": ["order/1", {"index": 1, "coupon_code": "SAVE10"}],
            },
            "next": "counter",
        },
        {
            "id": "counter",
            "type": "set_variable",
            "field": "visits",
            "value": 3,
            "retries": 0,
            "next": "copy",
        },
        {
            "id": "copy",
            "type": "set_variable",
            "field": "nickname",
            "value": {"from": "variable", "var": "first_name"},
            "on_invalid": "wait",
            "next": "wait",
        },
        {"id": "wait", "type": "delay", "until": "2026-12-24T10:00", "next": "team"},
        {"id": "team", "type": "assign", "team": "soporte", "strategy": "least_busy", "next": None},
    ],
}


def full_selection(type_: GraphQLType, depth: int = 6) -> str:
    """Every field of ``type_`` (every implementation of an interface) down to ``depth``."""
    named = get_named_type(type_)
    if not isinstance(named, GraphQLObjectType | GraphQLInterfaceType):
        return ""
    parts = ["__typename"]
    for name, field in named.fields.items():
        inner = get_named_type(field.type)
        if isinstance(inner, GraphQLObjectType | GraphQLInterfaceType):
            if depth > 0:
                parts.append(f"{name} {full_selection(inner, depth - 1)}")
        else:
            parts.append(name)
    if isinstance(named, GraphQLInterfaceType):
        for implementation in schema._schema.get_possible_types(named):
            parts.append(f"... on {implementation.name} {full_selection(implementation, depth)}")
    return "{ " + " ".join(parts) + " }"


def as_document(value: Any) -> Any:
    """A GraphQL answer read back as the JSON document: snake_case keys, no nulls, no typenames."""
    if isinstance(value, list):
        return [as_document(v) for v in value]
    if isinstance(value, dict):
        return {
            re.sub(r"([A-Z])", r"_\1", key).lower(): as_document(item)
            for key, item in value.items()
            if item is not None and key != "__typename"
        }
    return value


async def test_flow_definition_mirrors_the_document_one_type_per_node_kind(gql: GraphQLClient) -> None:
    flow_type = schema._schema.get_type("Flow")
    assert isinstance(flow_type, GraphQLObjectType)
    selection = full_selection(flow_type.fields["definition"].type)
    documents = [{**API_EXAMPLE, "name": "Abandoned cart (API.md)"}, SHAPES, *example_flows()]
    seen: set[str] = set()
    for document in documents:
        await ensure_catalog(gql, document)
        flow_id = (await gql("mutation($d: JSON!) { importFlow(definition: $d) { id } }", d=document))[
            "importFlow"
        ]["id"]
        found = await gql(
            f"query($id: ID!) {{ flow(id: $id) {{ draft definition {selection} }} }}", id=flow_id
        )
        typed = found["flow"]["definition"]
        assert found["flow"]["draft"] == document  # the JSON form stays as imported
        seen |= {node["__typename"] for node in typed["nodes"]}
        for node, raw in zip(typed["nodes"], document["nodes"], strict=True):
            assert node["id"] == raw["id"] and node["type"] == raw["type"]
            assert node["__typename"] == "".join(p.title() for p in raw["type"].split("_")) + "Node"
        expected = parse_flow(document).model_dump(mode="json", by_alias=True, exclude_none=True)
        assert as_document(_without_short_forms(typed)) == _short_forms_expanded(expected), document["name"]
    assert seen == {
        "MessageNode",
        "TemplateNode",
        "OptInNode",
        "TagNode",
        "SetVariableNode",
        "AssignNode",
        "ConditionNode",
        "DelayNode",
        "ConnectFlowNode",
    }

    # Short forms read as the object, the bare value in ``value`` (set_variable: its source).
    typed_shapes = await gql(
        "query($id: ID!) { flow(id: $id) { definition { nodes { __typename ... on TemplateNode { params "
        "{ header { value url } body buttons { value index couponCode } } } ... on SetVariableNode { field "
        "value { from value var } } } } } }",
        id=await _flow_id(gql, "Every shape"),
    )
    nodes = typed_shapes["flow"]["definition"]["nodes"]
    assert nodes[1]["params"] == {
        "header": {"value": "https://cdn.example/banner.jpg", "url": None},
        "body": ["42"],
        "buttons": [
            {"value": "order/1", "index": None, "couponCode": None},
            {"value": None, "index": 1, "couponCode": "SAVE10"},
        ],
    }
    assert nodes[2]["value"] == {"from": "value", "value": 3, "var": None}


async def _flow_id(gql: GraphQLClient, name: str) -> str:
    return next(f["id"] for f in (await gql("{ flows { id name } }"))["flows"] if f["name"] == name)


def _without_short_forms(value: Any) -> Any:
    """A short form comes back as ``{value: x}``; the document wrote ``x``."""
    if isinstance(value, list):
        return [_without_short_forms(v) for v in value]
    if isinstance(value, dict):
        if set(k for k, v in value.items() if v is not None and k != "__typename") == {"value"} and (
            value.get("__typename") in ("FlowTemplateHeaderParam", "FlowTemplateButtonParam")
        ):
            return value["value"]
        return {k: _without_short_forms(v) for k, v in value.items()}
    return value


def _short_forms_expanded(expected: dict[str, Any]) -> dict[str, Any]:
    """set_variable's bare value is shown as its source (``{from: value, value: x}``)."""
    document = copy.deepcopy(expected)
    for node in document["nodes"]:
        if node["type"] == "set_variable" and not isinstance(node.get("value"), dict) and "value" in node:
            node["value"] = {"from": "value", "value": node["value"]}
        elif node["type"] == "set_variable" and "value" not in node:
            node["value"] = {"from": "value"}
    return document


async def test_contact_assigned_agent_is_the_agent_and_its_id_is_assigned_agent_id(
    gql: GraphQLClient,
) -> None:
    agent = (await gql('mutation { createAgent(email: "ana@shop.example", name: "Ana") { id } }'))[
        "createAgent"
    ]
    phone = "+34600170901"
    await gql('mutation($p: String!) { sandboxInbound(phone: $p, text: "hola") }', p=phone)
    query = """query($p: String!) {
      contact(phone: $p) { assignedAgentId assignedAgent { id email name } }
      conversation(phone: $p) { assignedAgent { id email } } }"""
    before = await gql(query, p=phone)
    assert before["contact"] == {"assignedAgentId": None, "assignedAgent": None}
    await gql(
        "mutation($p: String!, $a: ID!) { assignContact(phone: $p, agentId: $a) { id } }",
        p=phone,
        a=agent["id"],
    )
    after = await gql(query, p=phone)
    assert after["contact"] == {
        "assignedAgentId": agent["id"],
        "assignedAgent": {"id": agent["id"], "email": "ana@shop.example", "name": "Ana"},
    }
    assert after["conversation"]["assignedAgent"] == {"id": agent["id"], "email": "ana@shop.example"}


async def test_the_diagram_names_buttons_branches_and_connected_flows(gql: GraphQLClient) -> None:
    await publish(
        gql, {"name": "Second reminder", "start": "t", "nodes": [{"id": "t", "type": "tag", "add": ["r"]}]}
    )
    flow_id = await publish(gql, API_EXAMPLE)
    diagram = (await gql("query($id: ID!) { flow(id: $id) { diagram versions { diagram } } }", id=flow_id))[
        "flow"
    ]
    text = diagram["diagram"]
    assert diagram["versions"][0]["diagram"] == text
    assert "button__" not in text and "branch__" not in text and "advance" not in text
    # The template's buttons have no title in the flow: the template's quick replies name them.
    assert "-->|Opción 1|" in text and "-->|Opción 2|" in text
    assert '-->|"Por supuesto!"|' in text  # a message button's own title
    assert "-->|VIP|" in text and "-->|otherwise|" in text  # the branch's name
    assert "-->|no reply in 2h|" in text and "-->|after 1d|" in text and "-->|reply|" in text
    assert re.search(r"-->\|Second reminder\| (f\d+)", text)  # the connect_flow edge names its flow
    target = re.search(r"-->\|Second reminder\| (f\d+)", text)
    assert target is not None and f'{target.group(1)}[["Second reminder"]]' in text
