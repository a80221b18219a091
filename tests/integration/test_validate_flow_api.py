"""validateFlow and publishFlow through GraphQL, checked against the workspace's real catalog."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.graphql import GraphQLClient, GraphQLErrors

VALIDATE = "mutation($id: ID!) { validateFlow(id: $id) { nodeId severity code message } }"


async def issues_for(gql: GraphQLClient, definition: dict[str, Any]) -> list[dict[str, Any]]:
    flow_id = (await gql("mutation($d: JSON!) { importFlow(definition: $d) { id } }", d=definition))[
        "importFlow"
    ]["id"]
    return (await gql(VALIDATE, id=flow_id))["validateFlow"]


@pytest.mark.parametrize(
    ("node", "code"),
    [
        ({"id": "n", "type": "tag", "add": ["ghost"]}, "UNKNOWN_TAG"),
        ({"id": "n", "type": "set_variable", "field": "ghost", "value": "x"}, "UNKNOWN_FIELD"),
        ({"id": "n", "type": "set_variable", "field": "age", "value": "many"}, "WRONG_VALUE_TYPE"),
        ({"id": "n", "type": "assign", "agent": "ghost@shop.example"}, "UNKNOWN_AGENT"),
        ({"id": "n", "type": "template", "template": "ghost"}, "UNKNOWN_TEMPLATE"),
        ({"id": "n", "type": "connect_flow", "flow": "Ghost flow"}, "UNKNOWN_FLOW"),
        (
            {
                "id": "n",
                "type": "condition",
                "branches": [{"name": "x", "segment": {"var": "age", "op": "between"}}],
            },
            "INVALID_SEGMENT",
        ),
        (
            {
                "id": "n",
                "type": "message",
                "text": "hi",
                "buttons": [{"id": f"b{i}", "title": "t"} for i in range(11)],
            },
            "TOO_MANY_BUTTONS",
        ),
        (
            {"id": "n", "type": "message", "text": "hi", "buttons": [{"id": "b", "title": "x" * 21}]},
            "BUTTON_TITLE_TOO_LONG",
        ),
        ({"id": "n", "type": "tag", "add": ["vip"], "next": "n"}, "SPIN_LOOP"),
    ],
)
async def test_each_catalog_code_names_the_node(gql: GraphQLClient, node: dict[str, Any], code: str) -> None:
    await gql('mutation { createTag(name: "vip", kind: SUPPORT) { id } }')
    await gql('mutation { createField(name: "age", type: NUMBER) { id } }')
    found = await issues_for(gql, {"name": f"Check {code}", "start": "n", "nodes": [node]})
    matching = [i for i in found if i["code"] == code]
    assert matching, found
    assert matching[0]["nodeId"] == "n" and matching[0]["severity"] == "ERROR"
    assert "'n'" in matching[0]["message"]


async def test_publish_is_refused_until_the_catalog_has_what_the_flow_uses(gql: GraphQLClient) -> None:
    definition = {"name": "Tagger", "start": "t", "nodes": [{"id": "t", "type": "tag", "add": ["promo"]}]}
    flow_id = (await gql("mutation($d: JSON!) { importFlow(definition: $d) { id } }", d=definition))[
        "importFlow"
    ]["id"]
    with pytest.raises(GraphQLErrors) as refused:
        await gql("mutation($id: ID!) { publishFlow(id: $id) { status } }", id=flow_id)
    assert refused.value.codes == ["INVALID_FLOW"]
    assert refused.value.errors[0]["extensions"]["nodeId"] == "t"
    await gql('mutation { createTag(name: "promo", kind: MARKETING) { id } }')
    published = await gql(
        "mutation($id: ID!) { publishFlow(id: $id) { status activeVersion issues { code } } }", id=flow_id
    )
    assert published["publishFlow"] == {"status": "ACTIVE", "activeVersion": 1, "issues": []}
