"""Issue 15, findings 7, 8 and 10: what the API, imports and webhooks refuse, through GraphQL and HTTP.

Phone numbers go through one parser (ASCII digits only, valid for their country, national ones
in the workspace's default country); NUMBER values beyond their range are INVALID_INPUT, not
INTERNAL; names and texts have documented lengths and no control characters. Each refusal is
INVALID_INPUT naming the field, and nothing is stored.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from server.runtime import Runtime
from tests.integration.conftest import WORKSPACE, publish
from tests.integration.test_webhook_triggers import ORDER_FLOW, make_trigger, post
from tests.support.graphql import GraphQLClient, GraphQLErrors

ARABIC_INDIC = "+3٤600111222"  # U+0664 ARABIC-INDIC DIGIT FOUR
FULL_WIDTH = "+３４600111222"  # U+FF13, U+FF14
TAG = "mutation($p: String!, $t: String!) { tagContact(phone: $p, tag: $t) { phone tags } }"
SET = "mutation($p: String!, $f: String!, $v: JSON) { setVariable(phone: $p, field: $f, value: $v) { variables } }"
CONTACT = "query($p: String!) { contact(phone: $p) { phone } }"


async def refused(gql: GraphQLClient, query: str, **variables: Any) -> dict[str, Any]:
    """The one error of a refused operation (INVALID_INPUT), for its message and field."""
    with pytest.raises(GraphQLErrors) as caught:
        await gql(query, **variables)
    assert caught.value.codes == ["INVALID_INPUT"], caught.value.errors
    return caught.value.errors[0]


async def contacts_total(runtime: Runtime) -> int:
    """Contacts stored in the workspace (the API has no listing; the real store answers)."""
    return await runtime.database.collection("contacts").count_documents({"workspace_id": WORKSPACE})


# --- finding 7: phone numbers ------------------------------------------------------------------


async def test_phones_with_digits_of_other_scripts_are_refused_everywhere(
    runtime: Runtime, gql: GraphQLClient
) -> None:
    await gql('mutation { createTag(name: "vip", kind: MARKETING) { id } }')
    for phone in (ARABIC_INDIC, FULL_WIDTH, "+34 600 1I1 222"):
        error = await refused(gql, TAG, p=phone, t="vip")
        assert error["extensions"]["field"] == "phone" and "ASCII digits" in error["message"]
        await refused(gql, "mutation($p: String!) { setOptIn(phone: $p, optedIn: false) { phone } }", p=phone)
        await refused(gql, CONTACT, p=phone)
        await refused(gql, 'mutation($p: String!) { sandboxInbound(phone: $p, text: "STOP") }', p=phone)
    error = await refused(
        gql,
        "mutation($r: JSON!) { importContacts(rows: $r) { phone } }",
        r=[{"phone": "+34600111333"}, {"phone": FULL_WIDTH}],
    )
    assert error["extensions"]["field"] == "row 2: phone"
    assert await contacts_total(runtime) == 0  # nothing stored, not even the good first row
    tagged = await gql(TAG, p="+34600111222", t="vip")
    assert tagged["tagContact"]["phone"] == "+34600111222"


async def test_numbers_must_be_valid_for_their_country(runtime: Runtime, gql: GraphQLClient) -> None:
    await gql('mutation { createTag(name: "vip", kind: MARKETING) { id } }')
    for phone in ("+3460011122", "+34 000 111 222", "+1 555 000 1234", "+999123456789"):
        error = await refused(gql, TAG, p=phone, t="vip")
        assert "not a valid phone number" in error["message"], phone
    assert await contacts_total(runtime) == 0


async def test_national_numbers_take_the_workspace_default_country(
    runtime: Runtime, gql: GraphQLClient
) -> None:
    await gql('mutation { createTag(name: "vip", kind: MARKETING) { id } }')
    error = await refused(gql, TAG, p="600 111 222", t="vip")
    assert "default country" in error["message"]
    assert (await gql('mutation { setDefaultCountry(country: "es") }'))["setDefaultCountry"] == "ES"
    for spelling in ("600 111 222", "600-111-222", "+34 600 111 222", "0034600111222", "(600) 111 222"):
        assert (await gql(TAG, p=spelling, t="vip"))["tagContact"]["phone"] == "+34600111222", spelling
    assert await contacts_total(runtime) == 1
    imported = await gql(
        "mutation($r: JSON!) { importContacts(rows: $r) { phone } }", r=[{"phone": "611 222 333"}]
    )
    assert imported["importContacts"] == [{"phone": "+34611222333"}]


async def test_a_webhook_payload_phone_in_another_script_is_refused(
    runtime: Runtime, gql: GraphQLClient
) -> None:
    mapping = {"phone": "customer.phone", "signature": "token"}
    trigger = await make_trigger(gql, await publish(gql, ORDER_FLOW), mapping)
    body = json.dumps({"id": 1, "customer": {"phone": ARABIC_INDIC}}).encode()
    response = await post(gql.http, trigger, body, {"X-Konvo-Token": trigger["secret"]})
    assert response.status_code == 400 and response.json()["path"] == "customer.phone"
    assert "ASCII digits" in response.json()["error"]
    assert await contacts_total(runtime) == 0


# --- finding 8: numbers beyond a field's range ---------------------------------------------------


async def test_numbers_beyond_the_field_range_are_invalid_input(gql: GraphQLClient) -> None:
    await gql('mutation { createField(name: "points", type: NUMBER) { id } }')
    for value in ("1" * 5000, "9" * 20, "1" * 400 + ".5", str(2**63), "-" + "9" * 4400):
        error = await refused(gql, SET, p="+34600111222", f="points", v=value)
        assert error["extensions"]["field"] == "points" and "2^63" in error["message"]
    error = await refused(gql, SET, p="+34600111222", f="points", v=2**64)
    assert "2^63" in error["message"]
    kept = await gql(SET, p="+34600111222", f="points", v="1.234,5")
    assert kept["setVariable"]["variables"] == {"points": 1234.5}


async def test_a_number_too_long_for_python_is_refused_with_a_code_in_json_and_in_the_query(
    gql: GraphQLClient,
) -> None:
    """5,000 digits as a raw JSON number (a 500 before: Python refuses to convert it) or as a literal."""
    headers = {"Authorization": f"Bearer {gql.api_key}", "content-type": "application/json"}
    body = (
        '{"query": "mutation($v: JSON) { setVariable(phone: \\"+34600111222\\", field: \\"points\\", value: $v) { id } }", "variables": {"v": '
        + "9" * 5000
        + "}}"
    )
    response = await gql.http.post("/graphql", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert [e["extensions"]["code"] for e in response.json()["errors"]] == ["BAD_REQUEST"]
    literal = (
        'mutation { setVariable(phone: "+34600111222", field: "points", value: ' + "9" * 5000 + ") { id } }"
    )
    response = await gql.http.post("/graphql", json={"query": literal}, headers=headers)
    assert response.status_code < 500, response.text
    codes = [e["extensions"]["code"] for e in response.json()["errors"]]
    assert codes and "INTERNAL" not in codes, response.text


# --- finding 10: names and texts -------------------------------------------------------------------


async def test_names_and_texts_have_limits_and_no_control_characters(gql: GraphQLClient) -> None:
    long_name = "x" * 200_000
    flow = {**ORDER_FLOW, "name": long_name}
    error = await refused(gql, "mutation($d: JSON!) { importFlow(definition: $d) { id } }", d=flow)
    assert error["extensions"]["field"] == "name" and "at most 200" in error["message"]
    error = await refused(
        gql, 'mutation($n: String!) { createAgent(email: "a@shop.example", name: $n) { id } }', n=long_name
    )
    assert error["extensions"]["field"] == "name" and "at most 120" in error["message"]
    for name in ("vip\x00", "v\x1bip", "vi\u202ep"):  # NUL, escape, right-to-left override
        error = await refused(
            gql, "mutation($n: String!) { createTag(name: $n, kind: MARKETING) { id } }", n=name
        )
        assert error["extensions"]["field"] == "name" and "U+" in error["message"], name
        await refused(gql, "mutation($n: String!) { createTeam(name: $n) { id } }", n=name)
    error = await refused(
        gql,
        'mutation($o: [String!]) { createField(name: "size", type: FIXED, options: $o) { id } }',
        o=["S", "M\x00"],
    )
    assert error["extensions"]["field"] == "options"
    error = await refused(gql, 'mutation { createAgent(email: "a\\u0000@shop.example", name: "Ana") { id } }')
    assert error["extensions"]["field"] == "email"
    assert (await gql("{ tags { name } }"))["tags"] == []
    assert (await gql("{ agents { id } }"))["agents"] == []

    send = 'mutation($t: String!) { sendAgentMessage(phone: "+34600111222", text: $t) { text } }'
    error = await refused(gql, send, t="hola\x00")
    assert error["extensions"]["field"] == "text"
    error = await refused(gql, send, t="a" * 4097)
    assert error["extensions"]["field"] == "text" and "4096" in error["message"]
    error = await refused(
        gql, 'mutation($t: String) { sandboxInbound(phone: "+34600111222", text: $t) }', t="x\x07"
    )
    assert error["extensions"]["field"] == "text"
    await gql('mutation { createField(name: "city", type: TEXT) { id } }')
    error = await refused(gql, SET, p="+34600111222", f="city", v="Sevilla\x00")
    assert error["extensions"]["field"] == "city"
    # What stays allowed: line breaks in texts, emoji with joiners in names.
    await gql("mutation($n: String!) { createTag(name: $n, kind: SUPPORT) { id } }", n="👩‍💻 dev")
    said = await gql(
        'mutation($t: String) { sandboxInbound(phone: "+34600111222", text: $t) }', t="línea 1\nlínea 2"
    )
    assert said["sandboxInbound"] is True
