"""The workspace catalog on the real store: uniqueness, validation, usage checks, snapshot.

Operations are called directly; a small schema built from ``CatalogQuery``/``CatalogMutation``
checks the resolvers and error codes without depending on the root schema.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import strawberry

from server.errors import Conflict, InvalidInput, NotFound
from server.graphql.catalog import CatalogMutation, CatalogQuery
from server.graphql.context import Context
from server.graphql.errors import CodedErrors
from server.machines.catalog import Catalog
from server.operations import agents as agent_ops
from server.operations import catalog as catalog_ops
from server.operations import fields as field_ops
from server.operations import flows as flow_ops
from server.operations import tags as tag_ops
from server.operations import template_drafts as draft_ops
from server.runtime import Runtime

WS = "ws_catalog"
OTHER = "ws_other"

BODY_ONLY = [{"type": "BODY", "text": "Hola {{1}}, tu carrito te espera: {{2}}"}]


def flow_using(
    name: str, tag_node: list[str] | None = None, segment_tag: str | None = None
) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = []
    if segment_tag is not None:
        nodes.append(
            {
                "id": "route",
                "type": "condition",
                "branches": [
                    {"name": "VIP", "segment": {"all": [{"not": {"tag": segment_tag}}]}, "next": None}
                ],
                "otherwise": None,
            }
        )
    if tag_node is not None:
        nodes.append({"id": "t", "type": "tag", "add": tag_node, "remove": [], "next": None})
    return {"name": name, "start": nodes[0]["id"], "nodes": nodes}


# --- tags ---


async def test_tags_are_unique_per_workspace_and_normalised(runtime: Runtime) -> None:
    tag = await tag_ops.create_tag(runtime.services, WS, "  vip  ", "MARKETING")
    assert tag["name"] == "vip" and tag["kind"] == "MARKETING" and tag["_id"].startswith("tag_")
    with pytest.raises(Conflict, match="'vip' already exists"):
        await tag_ops.create_tag(runtime.services, WS, "vip", "SUPPORT")
    await tag_ops.create_tag(runtime.services, OTHER, "vip", "SUPPORT")  # another workspace: no clash
    assert [t["name"] for t in await tag_ops.list_tags(runtime.services, WS)] == ["vip"]


@pytest.mark.parametrize(
    ("name", "kind"), [("", "MARKETING"), ("   ", "SUPPORT"), ("x" * 65, "SUPPORT"), ("ok", "PROMO")]
)
async def test_tag_input_is_checked(runtime: Runtime, name: str, kind: str) -> None:
    with pytest.raises(InvalidInput):
        await tag_ops.create_tag(runtime.services, WS, name, kind)


async def test_rename_tag(runtime: Runtime) -> None:
    a = await tag_ops.create_tag(runtime.services, WS, "call back", "SUPPORT")
    await tag_ops.create_tag(runtime.services, WS, "vip", "MARKETING")
    renamed = await tag_ops.rename_tag(runtime.services, WS, a["_id"], "call-back")
    assert renamed["name"] == "call-back"
    with pytest.raises(Conflict):
        await tag_ops.rename_tag(runtime.services, WS, a["_id"], "vip")
    with pytest.raises(NotFound):
        await tag_ops.rename_tag(runtime.services, OTHER, a["_id"], "elsewhere")


async def test_delete_tag_used_by_a_flow_draft_is_refused_naming_the_flow(runtime: Runtime) -> None:
    cold = await tag_ops.create_tag(runtime.services, WS, "cart-cold", "MARKETING")
    vip = await tag_ops.create_tag(runtime.services, WS, "vip", "MARKETING")
    spare = await tag_ops.create_tag(runtime.services, WS, "spare", "SUPPORT")
    await flow_ops.import_flow(runtime.services, WS, flow_using("Abandoned cart", tag_node=["cart-cold"]))
    await flow_ops.import_flow(runtime.services, WS, flow_using("VIP routing", segment_tag="vip"))

    with pytest.raises(Conflict) as caught:
        await tag_ops.delete_tag(runtime.services, WS, cold["_id"])
    assert "'Abandoned cart'" in caught.value.message
    assert caught.value.details["flows"] == ["Abandoned cart"]

    with pytest.raises(Conflict, match="'VIP routing'"):  # a segment leaf nested in all/not
        await tag_ops.delete_tag(runtime.services, WS, vip["_id"])
    with pytest.raises(Conflict, match="'VIP routing'"):
        await tag_ops.rename_tag(runtime.services, WS, vip["_id"], "gold")

    assert await tag_ops.delete_tag(runtime.services, WS, spare["_id"]) is True
    assert {t["name"] for t in await tag_ops.list_tags(runtime.services, WS)} == {"cart-cold", "vip"}
    with pytest.raises(NotFound):
        await tag_ops.delete_tag(runtime.services, WS, spare["_id"])


async def test_delete_tag_checks_the_active_version_too(runtime: Runtime) -> None:
    tag = await tag_ops.create_tag(runtime.services, WS, "lead", "MARKETING")
    flow = await flow_ops.import_flow(runtime.services, WS, flow_using("Leads", tag_node=["lead"]))
    await flow_ops.publish_flow(runtime.services, WS, flow["_id"])
    # The draft no longer mentions the tag, but the running version still does.
    await flow_ops.update_draft(runtime.services, WS, flow["_id"], flow_using("Leads", tag_node=["other"]))
    with pytest.raises(Conflict, match="'Leads'"):
        await tag_ops.delete_tag(runtime.services, WS, tag["_id"])


async def test_a_flow_in_another_workspace_does_not_block_delete(runtime: Runtime) -> None:
    tag = await tag_ops.create_tag(runtime.services, WS, "vip", "MARKETING")
    await flow_ops.import_flow(runtime.services, OTHER, flow_using("Elsewhere", tag_node=["vip"]))
    assert await tag_ops.delete_tag(runtime.services, WS, tag["_id"]) is True


# --- fields ---


async def test_fields(runtime: Runtime) -> None:
    city = await field_ops.create_field(runtime.services, WS, "city", "FIXED", [" Madrid ", "Málaga"])
    assert city["options"] == ["Madrid", "Málaga"] and city["type"] == "FIXED"
    points = await field_ops.create_field(
        runtime, WS, "points", "NUMBER", None, {"system": "Klaviyo", "property": "loyalty_points"}
    )
    assert points["options"] == [] and points["external"] == {
        "system": "klaviyo",
        "property": "loyalty_points",
    }
    assert (await field_ops.get_field(runtime.services, WS, "city"))["_id"] == city["_id"]
    assert [f["name"] for f in await field_ops.list_fields(runtime.services, WS)] == ["city", "points"]
    with pytest.raises(Conflict):
        await field_ops.create_field(runtime.services, WS, "city", "TEXT")
    with pytest.raises(NotFound, match="no field called 'town'"):
        await field_ops.get_field(runtime.services, WS, "town")
    with pytest.raises(NotFound):
        await field_ops.get_field(runtime.services, OTHER, "city")


@pytest.mark.parametrize(
    ("name", "kind", "options", "message"),
    [
        ("color", "FIXED", None, "needs at least one option"),
        ("color", "FIXED", [], "needs at least one option"),
        ("color", "FIXED", ["Rojo", "rojo"], "given twice"),
        ("age", "NUMBER", ["1"], "only FIXED fields take options"),
        ("first name", "TEXT", None, "letters, digits and underscores"),
        ("1st", "TEXT", None, "letters, digits and underscores"),
        ("phone", "TEXT", None, "built into every contact"),
        ("Name", "TEXT", None, "built into every contact"),
        ("ok", "COLOR", None, "field type must be one of"),
    ],
)
async def test_field_input_is_checked(
    runtime: Runtime, name: str, kind: str, options: list[str] | None, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        await field_ops.create_field(runtime.services, WS, name, kind, options)


async def test_field_external_system_is_checked(runtime: Runtime) -> None:
    with pytest.raises(InvalidInput, match="external system"):
        await field_ops.create_field(
            runtime.services, WS, "x", "TEXT", None, {"system": "hubspot", "property": "p"}
        )


# --- agents ---


async def test_agents(runtime: Runtime) -> None:
    ana = await agent_ops.create_agent(runtime.services, WS, " Ana@Shop.example ", "Ana", ["ventas"])
    assert ana["email"] == "ana@shop.example" and ana["available"] is True and ana["teams"] == ["ventas"]
    with pytest.raises(Conflict):
        await agent_ops.create_agent(runtime.services, WS, "ana@shop.example", "Ana again")
    with pytest.raises(InvalidInput, match="not an e-mail"):
        await agent_ops.create_agent(runtime.services, WS, "ana", "Ana")
    again = await agent_ops.set_agent(runtime.services, WS, "ana@shop.example", "Ana García")
    assert again["_id"] == ana["_id"] and again["name"] == "Ana García" and again["teams"] == ["ventas"]
    away = await agent_ops.set_agent_availability(runtime.services, WS, ana["_id"], False)
    assert away["available"] is False
    by_email = await agent_ops.set_agent_availability(runtime.services, WS, "ana@shop.example", True)
    assert by_email["available"] is True
    with pytest.raises(NotFound):
        await agent_ops.set_agent_availability(runtime.services, OTHER, ana["_id"], False)
    luis = await agent_ops.set_agent(runtime.services, WS, "luis@shop.example", "Luis")
    assert [a["_id"] for a in await agent_ops.list_agents(runtime.services, WS)] == [ana["_id"], luis["_id"]]


# --- templates ---


def cart_template(**changes: Any) -> dict[str, Any]:
    base = {
        "name": "cart_reminder",
        "language": "es",
        "category": "MARKETING",
        "components": [
            {"type": "HEADER", "format": "TEXT", "text": "Tu carrito"},
            {"type": "BODY", "text": "Hola {{1}}, vuelve: {{2}}"},
            {"type": "FOOTER", "text": "Tienda"},
            {
                "type": "BUTTONS",
                "buttons": [
                    {"type": "QUICK_REPLY", "text": "Comprar"},
                    {"type": "quick_reply", "text": "Más tarde"},
                    {"type": "URL", "text": "Ver carrito", "url": "https://shop.example/cart/{{1}}"},
                ],
            },
        ],
    }
    return {**base, **changes}


async def test_templates(runtime: Runtime) -> None:
    created = await draft_ops.create_template(runtime.services, WS, cart_template())
    assert created["status"] == "DRAFT" and created["rejection_reason"] is None
    assert created["components"][3]["buttons"][1]["type"] == "QUICK_REPLY"
    await draft_ops.create_template(runtime.services, WS, cart_template(language="en_US"))
    with pytest.raises(Conflict, match="language es"):
        await draft_ops.create_template(runtime.services, WS, cart_template())
    assert [(t["name"], t["language"]) for t in await draft_ops.list_templates(runtime.services, WS)] == [
        ("cart_reminder", "en_US"),
        ("cart_reminder", "es"),
    ]
    assert await draft_ops.list_templates(runtime.services, OTHER) == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "Cart Reminder"}, "lower-case letters"),
        ({"language": "spanish"}, "WhatsApp locale"),
        ({"category": "PROMO"}, "category must be one of"),
        ({"components": []}, "at least a BODY"),
        ({"components": [{"type": "FOOTER", "text": "x"}]}, "needs a BODY"),
        ({"components": [*BODY_ONLY, *BODY_ONLY]}, "at most one BODY"),
        ({"components": [{"type": "BODY", "text": "x" * 1025}]}, "at most 1024"),
        ({"components": [{"type": "SIDEBAR"}, *BODY_ONLY]}, "unknown component type"),
        (
            {
                "components": [
                    *BODY_ONLY,
                    {
                        "type": "BUTTONS",
                        "buttons": [{"type": "QUICK_REPLY", "text": str(i)} for i in range(11)],
                    },
                ]
            },
            "at most 10 buttons",
        ),
        (
            {
                "components": [
                    *BODY_ONLY,
                    {
                        "type": "BUTTONS",
                        "buttons": [
                            {"type": "URL", "text": str(i), "url": "https://x.example"} for i in range(3)
                        ],
                    },
                ]
            },
            "at most 2 URL",
        ),
        (
            {
                "components": [
                    *BODY_ONLY,
                    {"type": "BUTTONS", "buttons": [{"type": "PHONE_NUMBER", "text": "Llamar"}]},
                ]
            },
            "needs phone_number",
        ),
        (
            {"components": [*BODY_ONLY, {"type": "BUTTONS", "buttons": [{"type": "FLOW", "text": "x"}]}]},
            "type must be one of QUICK_REPLY",
        ),
        (
            {
                "components": [
                    *BODY_ONLY,
                    {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "x" * 26}]},
                ]
            },
            "at most 25",
        ),
    ],
)
async def test_template_input_is_checked(runtime: Runtime, changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        await draft_ops.create_template(runtime.services, WS, cart_template(**changes))


# --- snapshot ---


async def test_catalog_snapshot(runtime: Runtime) -> None:
    await tag_ops.create_tag(runtime.services, WS, "vip", "SUPPORT")
    await field_ops.create_field(runtime.services, WS, "city", "FIXED", ["Madrid"])
    await field_ops.create_field(runtime.services, WS, "age", "NUMBER")
    ana = await agent_ops.create_agent(runtime.services, WS, "ana@shop.example", "Ana", ["ventas"])
    await draft_ops.create_template(runtime.services, WS, cart_template())
    await flow_ops.import_flow(runtime.services, WS, flow_using("Second reminder", tag_node=["vip"]))
    await tag_ops.create_tag(runtime.services, OTHER, "not-mine", "SUPPORT")

    catalog = await catalog_ops.catalog_snapshot(runtime.services, WS)
    assert catalog.tags == {"vip": "SUPPORT"}
    assert catalog.fields == {"city": ("FIXED", ("Madrid",)), "age": ("NUMBER", ())}
    assert catalog.agents == {ana["_id"], "ana@shop.example"}
    assert catalog.has_agent("Ana@Shop.example") and catalog.teams == {"ventas"}
    assert catalog.flows == {"Second reminder"}
    summary = catalog.template("cart_reminder", "es")
    assert summary is not None and catalog.template("cart_reminder", "fr") is None
    assert (summary.category, summary.status, summary.body_params) == ("MARKETING", "DRAFT", 2)
    assert summary.quick_replies == ("Comprar", "Más tarde")
    assert [b.type for b in summary.buttons] == ["QUICK_REPLY", "QUICK_REPLY", "URL"]
    assert catalog.connects == {"Second reminder": frozenset()}  # its draft connects nowhere

    empty = await catalog_ops.catalog_snapshot(runtime.services, "ws_empty")
    assert empty.now is not None and empty.timezone == "UTC"  # the moment delays are judged at
    assert replace(empty, now=None) == Catalog(sandbox=True)  # no WhatsApp number: templates go unreviewed


# --- GraphQL resolvers (on a schema built from this module's classes only) ---


@strawberry.type
class _Query(CatalogQuery):
    pass


@strawberry.type
class _Mutation(CatalogMutation):
    pass


_schema = strawberry.Schema(query=_Query, mutation=_Mutation, extensions=[CodedErrors])


async def run(runtime: Runtime, query: str, role: str = "ADMIN", **variables: Any) -> Any:
    context = Context(
        services=runtime.services,
        key_guard=runtime.key_guard,
        imports=runtime.contact_services.imports,
        workspace_id=WS,
        role=role,
    )
    return await _schema.execute(query, variable_values=variables, context_value=context)


async def test_graphql_resolvers_and_error_codes(runtime: Runtime) -> None:
    created = await run(runtime, 'mutation { createTag(name: "vip", kind: SUPPORT) { id name kind } }')
    assert created.errors is None and created.data["createTag"]["kind"] == "SUPPORT"
    duplicate = await run(runtime, 'mutation { createTag(name: "vip", kind: MARKETING) { id } }')
    assert duplicate.errors and duplicate.errors[0].extensions["code"] == "CONFLICT"

    field = await run(runtime, 'mutation { createField(name: "color", type: FIXED) { id } }')
    assert field.errors and field.errors[0].extensions["code"] == "INVALID_INPUT"
    field = await run(
        runtime,
        'mutation { createField(name: "pts", type: NUMBER, external: {property: "points"}) '
        "{ name type options external { system property } } }",
    )
    assert field.errors is None
    assert field.data["createField"]["external"] == {"system": "klaviyo", "property": "points"}

    agent = await run(runtime, 'mutation { createAgent(email: "ana@shop.example", name: "Ana") { id } }')
    agent_id = agent.data["createAgent"]["id"]
    away = await run(
        runtime,
        "mutation($id: ID!) { setAgentAvailability(id: $id, available: false) { available } }",
        id=agent_id,
    )
    assert away.data["setAgentAvailability"]["available"] is False

    template = await run(
        runtime,
        'mutation($c: JSON!) { createTemplate(input: {name: "hello", language: "es", category: UTILITY, '
        "components: $c}) { name status category rejectionReason components } }",
        c=BODY_ONLY,
    )
    assert template.errors is None
    assert template.data["createTemplate"]["status"] == "DRAFT"

    listed = await run(
        runtime, "{ tags { name } fields { name } agents { email available } templates { name language } }"
    )
    assert listed.errors is None
    assert listed.data == {
        "tags": [{"name": "vip"}],
        "fields": [{"name": "pts"}],
        "agents": [{"email": "ana@shop.example", "available": False}],
        "templates": [{"name": "hello", "language": "es"}],
    }

    tag_id = created.data["createTag"]["id"]
    assert (await run(runtime, "mutation($id: ID!) { deleteTag(id: $id) }", id=tag_id)).data == {
        "deleteTag": True
    }
    forbidden = await run(runtime, 'mutation { createTag(name: "x", kind: SUPPORT) { id } }', role="AGENT")
    assert forbidden.errors and forbidden.errors[0].extensions["code"] == "FORBIDDEN"
