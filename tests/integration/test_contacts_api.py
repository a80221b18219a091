"""A contact's tags and typed variables over the API (and imports), through the contact's actor."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from server.identity import Identities
from server.pubsub import contact_topic
from server.runtime import Runtime
from tests.integration.conftest import WORKSPACE, publish
from tests.integration.test_nodes import flow, start_with
from tests.support.graphql import GraphQLClient, GraphQLErrors

TAG = "mutation($p: String!, $t: String!) { tagContact(phone: $p, tag: $t) { tags version } }"
UNTAG = "mutation($p: String!, $t: String!) { untagContact(phone: $p, tag: $t) { tags version } }"
SET = "mutation($p: String!, $f: String!, $v: JSON) { setVariable(phone: $p, field: $f, value: $v) { variables } }"
IMPORT = "mutation($r: JSON!) { importContacts(rows: $r) { phone tags variables optedIn optIn } }"
STATE = "query($p: String!) { contact(phone: $p) { tags variables optedIn } }"


async def catalog(gql: GraphQLClient) -> None:
    await gql('mutation { createTag(name: "vip", kind: SUPPORT) { id } }')
    await gql('mutation { createTag(name: "newsletter", kind: MARKETING) { id } }')
    for name, kind in (("age", "NUMBER"), ("vip_since", "DATE"), ("wants_sms", "BOOLEAN"), ("nick", "TEXT")):
        await gql(f'mutation {{ createField(name: "{name}", type: {kind}) {{ id }} }}')
    await gql('mutation { createField(name: "size", type: FIXED, options: ["S", "M", "L"]) { id } }')


async def test_tag_and_untag_are_one_committed_and_published_change(
    gql: GraphQLClient, runtime: Runtime
) -> None:
    await catalog(gql)
    phone = "+34600960001"
    resolved = await runtime.directory.resolve(WORKSPACE, Identities(phone=phone))
    assert resolved is not None
    updates = runtime.pubsub.subscribe(contact_topic(resolved.key))
    try:
        tagged = (await gql(TAG, p=phone, t="vip"))["tagContact"]
        assert tagged == {"tags": ["vip"], "version": 1}
        published = await asyncio.wait_for(updates.__anext__(), timeout=10)
        assert published["tags"] == ["vip"] and published["version"] == 1
    finally:
        await updates.aclose()
    assert (await gql(TAG, p=phone, t="vip"))["tagContact"] == {"tags": ["vip"], "version": 1}  # no change
    assert (await gql(TAG, p=phone, t="newsletter"))["tagContact"]["tags"] == ["vip", "newsletter"]
    assert (await gql(UNTAG, p=phone, t="vip"))["untagContact"]["tags"] == ["newsletter"]
    with pytest.raises(GraphQLErrors) as caught:
        await gql(TAG, p=phone, t="vpi")
    assert caught.value.codes == ["NOT_FOUND"] and "createTag" in caught.value.errors[0]["message"]


@pytest.mark.parametrize(
    ("field", "value", "stored"),
    [
        ("age", "3,5", 3.5),
        ("age", 41, 41),
        ("wants_sms", "Sí", True),
        ("size", " m ", "M"),
        ("vip_since", "24/12/2026", "2026-12-23T23:00:00+00:00"),  # midnight in Europe/Madrid
        ("nick", 12, "12"),
        ("nick", None, None),
    ],
)
async def test_set_variable_stores_the_typed_value(
    gql: GraphQLClient, field: str, value: Any, stored: Any
) -> None:
    await catalog(gql)
    result = (await gql(SET, p="+34600960002", f=field, v=value))["setVariable"]
    assert result["variables"] == {field: stored}


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("age", "treinta", "NUMBER"),
        ("wants_sms", "quizás", "BOOLEAN"),
        ("size", "XL", "FIXED"),
        ("vip_since", "mañana", "DATE"),
        ("nick", {"a": 1}, "TEXT"),
    ],
)
async def test_a_wrong_value_names_the_field_and_its_type(
    gql: GraphQLClient, field: str, value: Any, expected: str
) -> None:
    await catalog(gql)
    with pytest.raises(GraphQLErrors) as caught:
        await gql(SET, p="+34600960003", f=field, v=value)
    error = caught.value.errors[0]
    assert error["extensions"]["code"] == "INVALID_INPUT"
    assert error["extensions"]["field"] == field and error["extensions"]["expectedType"] == expected
    assert f"field '{field}' ({expected})" in error["message"]
    with pytest.raises(GraphQLErrors) as unknown:
        await gql(SET, p="+34600960003", f="shoe_size", v="42")
    assert unknown.value.codes == ["NOT_FOUND"]


async def test_import_checks_every_row_before_applying_any(gql: GraphQLClient) -> None:
    await catalog(gql)
    good = {"phone": "+34 600 960 010", "variables": {"age": "33"}, "tags": ["vip"], "optedIn": True}
    bad = {"phone": "+34600960011", "variables": {"age": "muchos"}}
    with pytest.raises(GraphQLErrors) as caught:
        await gql(IMPORT, r=[good, bad])
    assert caught.value.codes == ["INVALID_INPUT"]
    assert caught.value.errors[0]["message"].startswith("row 2: field 'age' (NUMBER)")
    assert (await gql(STATE, p="+34600960010"))["contact"] is None  # nothing applied
    imported = (await gql(IMPORT, r=[good, {"phone": "+34600960011", "variables": {"size": "l"}}]))[
        "importContacts"
    ]
    assert imported[0]["tags"] == ["vip"] and imported[0]["variables"] == {"age": 33}
    assert imported[0]["optedIn"] is True and imported[0]["optIn"]["source"] == "import"
    assert imported[1]["variables"] == {"size": "L"}


async def test_renaming_and_deleting_a_tag_follows_on_contacts_and_flows(gql: GraphQLClient) -> None:
    await catalog(gql)
    phone = "+34600960020"
    await gql(TAG, p=phone, t="vip")
    await gql(TAG, p=phone, t="newsletter")
    tags = {t["name"]: t["id"] for t in (await gql("{ tags { id name } }"))["tags"]}
    await gql('mutation($id: ID!) { renameTag(id: $id, name: "VIP") { name } }', id=tags["vip"])
    assert (await gql(STATE, p=phone))["contact"]["tags"] == ["VIP", "newsletter"]
    # The rule: a tag a flow's draft or active version uses cannot go; the error names the flows.
    flow_id = await publish(
        gql, flow("Tagger", "t", {"id": "t", "type": "tag", "add": ["VIP"], "next": None})
    )
    with pytest.raises(GraphQLErrors) as caught:
        await gql("mutation($id: ID!) { deleteTag(id: $id) }", id=tags["vip"])
    assert caught.value.codes == ["CONFLICT"]
    assert "used by flow(s) 'Tagger'; remove it from them first" in caught.value.errors[0]["message"]
    await start_with(gql, flow_id, "+34600960021")
    # A tag no flow uses is deleted from the catalog and taken off every contact.
    assert (await gql("mutation($id: ID!) { deleteTag(id: $id) }", id=tags["newsletter"]))[
        "deleteTag"
    ] is True
    assert (await gql(STATE, p=phone))["contact"]["tags"] == ["VIP"]
    assert (await gql(STATE, p="+34600960021"))["contact"]["tags"] == ["VIP"]
    assert (await gql(UNTAG, p=phone, t="VIP"))["untagContact"]["tags"] == []  # the actor saw the change
