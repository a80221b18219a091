"""Flow starts that set contact fields and tags: startFlow(contact:) and a webhook mapping's contact.

The data is typed against the workspace's fields and written in the turn that starts the run, so
the first message already shows ``{{contact.first_name}}``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.conftest import publish
from tests.integration.test_webhook_triggers import make_trigger, outbox, post, signed
from tests.support.graphql import GraphQLClient, GraphQLErrors, eventually

GREETING = {
    "name": "Greeting",
    "start": "hello",
    "nodes": [
        {
            "id": "hello",
            "type": "template",
            "template": "order_update",
            "language": "es",
            "params": {"body": ["{{contact.first_name}}", "{{contact.size}}"]},
            "next": None,
        }
    ],
}
START = """mutation($f: ID!, $p: String!, $c: JSON) {
  startFlow(flowId: $f, phone: $p, contact: $c) { id status } }"""
CONTACT = "query($p: String!) { contact(phone: $p) { tags variables runs { id } } }"


async def catalog(gql: GraphQLClient) -> None:
    await gql('mutation { createTag(name: "vip", kind: SUPPORT) { id } }')
    await gql('mutation { createField(name: "first_name", type: TEXT) { id } }')
    await gql('mutation { createField(name: "size", type: FIXED, options: ["S", "M", "L"]) { id } }')
    await gql('mutation { createField(name: "birthday", type: DATE) { id } }')


async def sent_params(gql: GraphQLClient, phone: str) -> list[list[str]]:
    sent = await eventually(lambda: outbox(gql, phone), lambda found: len(found) >= 1)
    return [m["template"]["params"]["body"] for m in sent]


async def test_start_flow_sets_typed_contact_fields_and_tags_before_the_first_message(
    gql: GraphQLClient,
) -> None:
    await catalog(gql)
    flow_id = await publish(gql, GREETING)
    phone = "+34600910001"
    data = {"fields": {"first_name": "Ana", "size": " m ", "birthday": "24/12/2026"}, "tags": ["vip"]}
    run = (await gql(START, f=flow_id, p=phone, c=data))["startFlow"]
    assert run["status"] == "COMPLETED"
    assert await sent_params(gql, phone) == [["Ana", "M"]]
    contact = (await gql(CONTACT, p=phone))["contact"]
    assert contact["tags"] == ["vip"]
    assert contact["variables"] == {
        "first_name": "Ana",
        "size": "M",
        "birthday": "2026-12-23T23:00:00+00:00",  # midnight in the workspace's Europe/Madrid
    }


@pytest.mark.parametrize(
    ("data", "code", "field"),
    [
        ({"fields": {"size": "XL"}}, "INVALID_INPUT", "size"),
        ({"fields": {"birthday": "someday"}}, "INVALID_INPUT", "birthday"),
        ({"fields": {"nickname": "Ana"}}, "NOT_FOUND", "contact.fields.nickname"),
        ({"tags": ["gold"]}, "NOT_FOUND", "tag"),
        ({"fields": {}, "colour": "red"}, "INVALID_INPUT", "contact"),
    ],
)
async def test_start_flow_refuses_contact_data_the_workspace_fields_do_not_take(
    gql: GraphQLClient, data: dict[str, Any], code: str, field: str
) -> None:
    await catalog(gql)
    flow_id = await publish(gql, GREETING)
    with pytest.raises(GraphQLErrors) as caught:
        await gql(START, f=flow_id, p="+34600910002", c=data)
    assert caught.value.codes == [code]
    assert caught.value.errors[0]["extensions"]["field"] == field
    assert (await gql(CONTACT, p="+34600910002"))["contact"] is None  # nothing started, nobody created


async def test_a_webhook_mapping_fills_contact_fields_and_tags(gql: GraphQLClient) -> None:
    await catalog(gql)
    flow_id = await publish(gql, GREETING)
    mapping = {
        "phone": "customer.phone",
        "contact": {
            "fields": {
                "first_name": "customer.first_name",
                "size": {"path": "customer.size", "optional": True},
            },
            "tags": ["vip"],
        },
    }
    with pytest.raises(GraphQLErrors) as caught:  # an unknown field is refused when the trigger is made
        bad = {**mapping, "contact": {"fields": {"nickname": "customer.nick"}}}
        await make_trigger(gql, flow_id, bad)
    assert caught.value.codes == ["INVALID_INPUT"]
    assert caught.value.errors[0]["extensions"]["field"] == "mapping.contact.fields.nickname"
    trigger = await make_trigger(gql, flow_id, mapping)
    order = {"customer": {"phone": "+34 600 910 003", "first_name": "Lucía", "size": "l"}}
    response = await post(gql.http, trigger, *signed(trigger, order))
    assert response.status_code == 202, response.text
    assert await sent_params(gql, "+34600910003") == [["Lucía", "L"]]
    contact = (await gql(CONTACT, p="+34600910003"))["contact"]
    assert contact["tags"] == ["vip"] and contact["variables"] == {"first_name": "Lucía", "size": "L"}
    # A value the field does not take is reported with the field and the path, not dropped.
    wrong = {"customer": {"phone": "+34 600 910 004", "first_name": "Eva", "size": "XXL"}}
    refused = await post(gql.http, trigger, *signed(trigger, wrong))
    assert refused.status_code == 400
    assert refused.json()["field"] == "size" and refused.json()["path"] == "customer.size"
    assert "'size' (FIXED)" in refused.json()["error"]
    assert (await gql(CONTACT, p="+34600910004"))["contact"] is None
