"""Listing contacts over GraphQL: segments, search, a stable order, cursors and totalCount."""

from __future__ import annotations

from typing import Any

import pytest

from server.identity import Identities
from server.ids import new_id
from server.operations.channel_inbound import accept_inbound, inbound_record
from server.runtime import Runtime
from tests.integration.conftest import WORKSPACE, client_for, make_workspace
from tests.support.graphql import GraphQLClient, GraphQLErrors

LIST = """query($s: JSON, $q: String, $n: Int, $a: String) {
  contacts(segment: $s, search: $q, first: $n, after: $a) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { id phone } }
    nodes { phone name username bsuid }
  }
}"""
TAG = "mutation($p: String!, $t: String!) { tagContact(phone: $p, tag: $t) { id } }"
SET = "mutation($p: String!, $f: String!, $v: JSON) { setVariable(phone: $p, field: $f, value: $v) { id } }"


async def listed(gql: GraphQLClient, **variables: Any) -> dict[str, Any]:
    return (await gql(LIST, **variables))["contacts"]


async def say_hello(runtime: Runtime, identities: Identities, name: str | None = None) -> None:
    """A customer writes (with the profile name WhatsApp shows), as a channel records it."""
    resolved = await runtime.directory.resolve(WORKSPACE, identities)
    assert resolved is not None and runtime.actors is not None
    _, event = await accept_inbound(
        runtime,
        inbound_record(
            WORKSPACE,
            new_id("wamid"),
            contact_id=resolved.key.doc_id,
            channel="sandbox",
            kind="text",
            text="hola",
            name=name,
            at=runtime.clock.now(),
            **{"phone": None, **identities.fields()},
        ),
    )
    assert event is not None
    await runtime.actors.ask(resolved.key, event)


async def test_contacts_pages_in_creation_order_and_stays_correct_while_contacts_are_added(
    gql: GraphQLClient,
) -> None:
    await gql('mutation { createTag(name: "vip", kind: SUPPORT) { id } }')
    phones = [f"+3460097{n:04d}" for n in range(7)]
    for phone in phones:
        await gql(TAG, p=phone, t="vip")
    first = await listed(gql, n=3)
    assert first["totalCount"] == 7
    assert [n["phone"] for n in first["nodes"]] == phones[:3]
    assert [e["node"]["phone"] for e in first["edges"]] == phones[:3]
    assert first["pageInfo"]["hasNextPage"] is True
    assert first["pageInfo"]["endCursor"] == first["edges"][-1]["cursor"]
    added = [f"+3460098{n:04d}" for n in range(2)]
    for phone in added:  # created while a client pages: they come after, nothing is skipped or repeated
        await gql(TAG, p=phone, t="vip")
    seen = [n["phone"] for n in first["nodes"]]
    cursor = first["pageInfo"]["endCursor"]
    while cursor is not None:
        page = await listed(gql, n=3, a=cursor)
        seen += [n["phone"] for n in page["nodes"]]
        cursor = page["pageInfo"]["endCursor"] if page["pageInfo"]["hasNextPage"] else None
    assert seen == phones + added
    assert (await listed(gql, n=200))["totalCount"] == 9


async def test_contacts_of_a_segment_are_counted_and_listed_by_the_segment_compiler(
    gql: GraphQLClient,
) -> None:
    await gql('mutation { createTag(name: "vip", kind: SUPPORT) { id } }')
    await gql('mutation { createField(name: "age", type: NUMBER) { id } }')
    for n in range(6):
        phone = f"+3460096{n:04d}"
        await gql(SET, p=phone, f="age", v=20 + n)
        if n % 2 == 0:
            await gql(TAG, p=phone, t="vip")
    vip = await listed(gql, s={"tag": "vip"})
    assert vip["totalCount"] == 3
    assert [n["phone"] for n in vip["nodes"]] == ["+34600960000", "+34600960002", "+34600960004"]
    older_vip = {"all": [{"tag": "vip"}, {"var": "age", "op": "gte", "value": 22}]}
    page = await listed(gql, s=older_vip, n=1)
    assert page["totalCount"] == 2 and page["pageInfo"]["hasNextPage"] is True
    assert [n["phone"] for n in page["nodes"]] == ["+34600960002"]
    rest = await listed(gql, s=older_vip, n=1, a=page["pageInfo"]["endCursor"])
    assert [n["phone"] for n in rest["nodes"]] == ["+34600960004"] and not rest["pageInfo"]["hasNextPage"]
    with pytest.raises(GraphQLErrors) as caught:
        await listed(gql, s={"tag": ""})
    assert caught.value.codes == ["INVALID_INPUT"] and "segment.tag" in caught.value.errors[0]["message"]


async def test_a_bare_date_in_a_segment_is_midnight_in_the_workspace_zone(gql: GraphQLClient) -> None:
    """A DATE field filled with 24/12/2026 in Madrid is 2026-12-23T23:00Z: the same day as $date 2026-12-24."""
    await gql('mutation { createField(name: "birthday", type: DATE) { id } }')
    await gql(SET, p="+34600950001", f="birthday", v="24/12/2026")
    await gql(SET, p="+34600950002", f="birthday", v="23/12/2026")
    on_or_after = {"var": "birthday", "op": "gte", "value": {"$date": "2026-12-24"}}
    assert [n["phone"] for n in (await listed(gql, s=on_or_after))["nodes"]] == ["+34600950001"]
    same_day = {"var": "birthday", "op": "eq", "value": {"$date": "2026-12-24"}}
    assert (await listed(gql, s=same_day))["totalCount"] == 1
    explicit_utc = {"var": "birthday", "op": "gte", "value": {"$date": "2026-12-24T00:00:00Z"}}
    assert (await listed(gql, s=explicit_utc))["totalCount"] == 0  # an offset given is kept


async def test_search_matches_a_name_phone_bsuid_or_username_prefix_in_any_case(
    gql: GraphQLClient, runtime: Runtime
) -> None:
    await say_hello(runtime, Identities(phone="+34600940001"), name="María López")
    await say_hello(runtime, Identities(phone="+52551234567"), name="Juan Pérez")
    await say_hello(runtime, Identities(bsuid="US.13491208655302741918", username="@marisol"))

    async def found(search: str) -> list[str | None]:
        page = await listed(gql, q=search)
        assert page["totalCount"] == len(page["nodes"])
        return [n["phone"] or n["bsuid"] for n in page["nodes"]]

    assert await found("marí") == ["+34600940001"]
    assert await found("LÓPEZ") == ["+34600940001"]  # a word of the name
    assert await found("mari") == ["US.13491208655302741918"]  # the username; "marí" is not "mari"
    assert await found("@Marisol") == ["US.13491208655302741918"]
    assert await found("us.1349") == ["US.13491208655302741918"]
    assert await found("+52 55") == ["+52551234567"]
    assert await found("3460094") == ["+34600940001"]
    assert await found("pérez x") == []
    assert await found(".*") == []  # text, not a pattern


async def test_contacts_are_scoped_to_the_workspace_and_first_is_bounded(
    gql: GraphQLClient, runtime: Runtime
) -> None:
    await gql('mutation { createTag(name: "vip", kind: SUPPORT) { id } }')
    await gql(TAG, p="+34600930001", t="vip")
    other = client_for(runtime, await make_workspace(runtime, "ws_other"))
    try:
        assert (await listed(other))["totalCount"] == 0
        ours = await listed(gql)
        with pytest.raises(GraphQLErrors) as caught:  # another workspace's cursor names nothing of its own
            await listed(other, a=ours["edges"][0]["cursor"])
        assert caught.value.codes == ["INVALID_INPUT"]
    finally:
        await other.http.aclose()
    with pytest.raises(GraphQLErrors) as caught:
        await listed(gql, n=201)
    assert caught.value.codes == ["INVALID_INPUT"] and "first" in caught.value.errors[0]["message"]
    assert caught.value.errors[0]["extensions"].get("field") == "first"
