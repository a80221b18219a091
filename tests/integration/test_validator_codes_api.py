"""Every structural and template validator code through ``validateFlow`` on the real store.

``test_validate_flow_api.py`` covers the catalog codes (unknown tag, field, agent, ...); this file
covers the rest, so each code the validator can emit is seen at least once through the API.
"""

from __future__ import annotations

from typing import Any

import pytest

from server.ids import new_id
from server.runtime import Runtime
from tests.integration.conftest import WORKSPACE
from tests.support.graphql import GraphQLClient, GraphQLErrors

VALIDATE = "mutation($id: ID!) { validateFlow(id: $id) { nodeId severity code message } }"
IMPORT = "mutation($d: JSON!) { importFlow(definition: $d) { id } }"


def msg(node_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "message", "text": "Hola", **extra}


async def validate(gql: GraphQLClient, definition: dict[str, Any]) -> list[dict[str, Any]]:
    flow_id = (await gql(IMPORT, d={"name": new_id("flow"), **definition}))["importFlow"]["id"]
    return (await gql(VALIDATE, id=flow_id))["validateFlow"]


def only(found: list[dict[str, Any]], code: str) -> dict[str, Any]:
    matching = [i for i in found if i["code"] == code]
    assert len(matching) == 1, found
    assert matching[0]["message"].strip(), "every issue says what to do"
    return matching[0]


STRUCTURAL: list[tuple[dict[str, Any], str, str | None, str]] = [
    ({"start": None, "nodes": [msg("a")]}, "MISSING_START", None, "ERROR"),
    ({"start": "nowhere", "nodes": [msg("a")]}, "UNKNOWN_START", None, "ERROR"),
    ({"start": None, "nodes": []}, "EMPTY_FLOW", None, "ERROR"),
    ({"start": "a", "nodes": [msg("a"), msg("a")]}, "DUPLICATE_NODE_ID", "a", "ERROR"),
    ({"start": "a", "nodes": [msg("a", next="ghost")]}, "UNKNOWN_NEXT", "a", "ERROR"),
    ({"start": "a", "nodes": [msg("a"), msg("b")]}, "UNREACHABLE_NODE", "b", "WARNING"),
    ({"start": "a", "nodes": [{"id": "a", "type": "message"}]}, "EMPTY_MESSAGE", "a", "ERROR"),
    ({"start": "a", "nodes": [msg("a", buttons=[{"id": "b1"}])]}, "BUTTON_TITLE_MISSING", "a", "ERROR"),
    (
        {"start": "a", "nodes": [msg("a", buttons=[{"id": "b", "title": "Sí"}, {"id": "b", "title": "No"}])]},
        "DUPLICATE_BUTTON_ID",
        "a",
        "ERROR",
    ),
    ({"start": "a", "nodes": [{"id": "a", "type": "assign"}]}, "ASSIGN_TARGET_MISSING", "a", "ERROR"),
    (
        {"start": "a", "nodes": [{"id": "a", "type": "condition", "branches": []}]},
        "CONDITION_WITHOUT_BRANCHES",
        "a",
        "ERROR",
    ),
    ({"start": "a", "nodes": [{"id": "a", "type": "delay"}]}, "DELAY_NEEDS_ONE", "a", "ERROR"),
    (
        {"start": "a", "nodes": [{"id": "a", "type": "delay", "until": "christmas"}]},
        "INVALID_UNTIL",
        "a",
        "ERROR",
    ),
    (
        {"start": "a", "nodes": [{"id": "a", "type": "delay", "for": "2d", "next": "m"}, msg("m")]},
        "SIMPLE_MESSAGE_AFTER_LONG_WAIT",
        "m",
        "WARNING",
    ),
]


@pytest.mark.parametrize(
    ("definition", "code", "node_id", "severity"), STRUCTURAL, ids=[case[1] for case in STRUCTURAL]
)
async def test_structural_codes(
    gql: GraphQLClient, definition: dict[str, Any], code: str, node_id: str | None, severity: str
) -> None:
    issue = only(await validate(gql, definition), code)
    assert (issue["nodeId"], issue["severity"]) == (node_id, severity)
    if node_id is not None:
        assert repr(node_id) in issue["message"]


async def test_connect_to_itself_is_named(gql: GraphQLClient) -> None:
    definition = {
        "name": "Loop back",
        "start": "a",
        "nodes": [{"id": "a", "type": "connect_flow", "flow": "Loop back"}],
    }
    flow_id = (await gql(IMPORT, d=definition))["importFlow"]["id"]
    issue = only((await gql(VALIDATE, id=flow_id))["validateFlow"], "CONNECT_LOOP")
    assert (issue["nodeId"], issue["severity"]) == ("a", "ERROR")
    assert "'Loop back' → 'Loop back'" in issue["message"]


async def test_errors_block_publishing_but_warnings_do_not(gql: GraphQLClient) -> None:
    broken = await gql(IMPORT, d={"name": "Broken", "start": "a", "nodes": [msg("a", next="ghost")]})
    with pytest.raises(GraphQLErrors) as refused:
        await gql("mutation($id: ID!) { publishFlow(id: $id) { status } }", id=broken["importFlow"]["id"])
    assert refused.value.codes == ["INVALID_FLOW"]
    assert refused.value.errors[0]["extensions"]["nodeId"] == "a"
    warned = await gql(IMPORT, d={"name": "Warned", "start": "a", "nodes": [msg("a"), msg("b")]})
    published = await gql(
        "mutation($id: ID!) { publishFlow(id: $id) { status issues { code } } }",
        id=warned["importFlow"]["id"],
    )
    assert published["publishFlow"] == {"status": "ACTIVE", "issues": [{"code": "UNREACHABLE_NODE"}]}


async def create_template(gql: GraphQLClient, name: str, buttons: list[dict[str, str]]) -> None:
    components: list[dict[str, Any]] = [{"type": "BODY", "text": "Hola"}]
    if buttons:
        components.append({"type": "BUTTONS", "buttons": buttons})
    await gql(
        "mutation($i: TemplateInput!) { createTemplate(input: $i) { id } }",
        i={"name": name, "language": "es", "category": "MARKETING", "components": components},
    )


def template_node(name: str, buttons: int = 0) -> dict[str, Any]:
    return {
        "id": "t",
        "type": "template",
        "template": name,
        "language": "es",
        "buttons": [{"id": f"b{i}", "next": None} for i in range(buttons)],
    }


async def test_draft_template_in_the_sandbox_is_a_warning_saying_meta_has_not_seen_it(
    gql: GraphQLClient,
) -> None:
    # issue 14: without a WhatsApp number nothing is submitted, so the sandbox never talks of approval
    await create_template(gql, "promo_draft", [])
    issue = only(
        await validate(gql, {"start": "t", "nodes": [template_node("promo_draft")]}), "TEMPLATE_SANDBOX_ONLY"
    )
    assert (issue["nodeId"], issue["severity"]) == ("t", "WARNING")
    assert "not been submitted to Meta" in issue["message"]


async def test_node_buttons_beyond_the_template_quick_replies(gql: GraphQLClient) -> None:
    await create_template(gql, "promo_one_reply", [{"type": "QUICK_REPLY", "text": "Comprar"}])
    issue = only(
        await validate(gql, {"start": "t", "nodes": [template_node("promo_one_reply", buttons=2)]}),
        "UNKNOWN_TEMPLATE_BUTTON",
    )
    assert (issue["nodeId"], issue["severity"]) == ("t", "ERROR")
    assert "'Comprar'" in issue["message"]


def quick(text: str) -> dict[str, str]:
    return {"type": "QUICK_REPLY", "text": text}


OVER_LIMIT = [
    ([quick(f"q{i}") for i in range(11)], "TEMPLATE_TOO_MANY_BUTTONS"),
    (
        [{"type": "URL", "text": f"u{i}", "url": "https://shop.example"} for i in range(3)],
        "TEMPLATE_TOO_MANY_URL_BUTTONS",
    ),
    (
        [{"type": "PHONE_NUMBER", "text": f"p{i}", "phone_number": "+34600000000"} for i in range(2)],
        "TEMPLATE_TOO_MANY_PHONE_BUTTONS",
    ),
    ([{"type": "COPY_CODE", "text": f"c{i}"} for i in range(2)], "TEMPLATE_TOO_MANY_COPY_CODE_BUTTONS"),
]


@pytest.mark.parametrize(("buttons", "code"), OVER_LIMIT, ids=[case[1] for case in OVER_LIMIT])
async def test_template_button_rules(
    gql: GraphQLClient, runtime: Runtime, buttons: list[dict[str, str]], code: str
) -> None:
    # createTemplate refuses these shapes, so the template arrives the other way in: as stored from
    # a sync with Meta (a template edited in WhatsApp Manager), which the validator must still catch.
    with pytest.raises(GraphQLErrors) as refused:
        await create_template(gql, "over_limit", buttons)
    assert refused.value.codes == ["INVALID_INPUT"]
    now = runtime.clock.now()
    await runtime.templates.insert(
        {
            "_id": new_id("tpl"),
            "workspace_id": WORKSPACE,
            "name": "synced",
            "language": "es",
            "category": "MARKETING",
            "status": "APPROVED",
            "rejection_reason": None,
            "components": [{"type": "BODY", "text": "Hola"}, {"type": "BUTTONS", "buttons": buttons}],
            "created_at": now,
            "updated_at": now,
        }
    )
    issue = only(await validate(gql, {"start": "t", "nodes": [template_node("synced")]}), code)
    assert (issue["nodeId"], issue["severity"]) == ("t", "ERROR")
