"""Data-subject requests over GraphQL: exportContact returns what is held, eraseContact leaves only a tombstone."""

from __future__ import annotations

from typing import Any

import pytest
from arq.constants import job_key_prefix

from server.actors.events import EraseContact, InboundMessage, SetVariables
from server.actors.message_statuses import StatusReport
from server.ids import ContactKey, new_id
from server.operations.contact_erasure import PER_CONTACT, erased_message
from server.redis_keys import arq_job_id, timer_queue
from server.runtime import Runtime
from tests.integration.conftest import WORKSPACE, client_for, make_workspace, publish
from tests.support.graphql import GraphQLClient, GraphQLErrors, eventually

FLOW = {
    "name": "Reserve",
    "start": "hello",
    "nodes": [
        {"id": "hello", "type": "message", "text": "Hola {{contact.first_name}}", "next": "wait"},
        {"id": "wait", "type": "delay", "for": "2h", "next": "bye"},
        {"id": "bye", "type": "message", "text": "Adiós", "next": None},
    ],
}
PHONE = "+34600900001"
SAY = 'mutation($p: String!) { sandboxInbound(phone: $p, text: "hola") }'
CONTACT = "query($p: String!) { contact(phone: $p) { id runs { id status } } }"
EXPORT = "query($id: ID!) { exportContact(id: $id) }"
ERASE = "mutation($id: ID!) { eraseContact(id: $id) }"


async def held_about(runtime: Runtime, contact_id: str) -> dict[str, list[dict[str, Any]]]:
    """Every stored document that names the contact (its id or its phone), by collection."""
    found: dict[str, list[dict[str, Any]]] = {}
    names = {"contacts", *(name for name, _ in PER_CONTACT)}
    for name in sorted(names):
        documents = await runtime.database.collection(name).find({}).to_list()
        about = [d for d in documents if contact_id in str(d) or PHONE in str(d)]
        if about:
            found[name] = about
    return found


async def test_export_then_erase_leaves_only_an_anonymous_tombstone(
    gql: GraphQLClient, runtime: Runtime
) -> None:
    await gql('mutation { createTag(name: "vip", kind: SUPPORT) { id } }')
    await gql('mutation { createField(name: "first_name", type: TEXT) { id } }')
    flow_id = await publish(gql, FLOW)
    await gql(SAY, p=PHONE)  # the customer writes: the window is open
    await gql('mutation($p: String!) { tagContact(phone: $p, tag: "vip") { id } }', p=PHONE)
    await gql("mutation($p: String!) { setOptIn(phone: $p, optedIn: true) { id } }", p=PHONE)
    start = "mutation($f: ID!, $p: String!, $c: JSON) { startFlow(flowId: $f, phone: $p, contact: $c) { id status } }"
    run = (await gql(start, f=flow_id, p=PHONE, c={"fields": {"first_name": "Ana"}}))["startFlow"]
    assert run["status"] == "WAITING"
    contact_id = (await gql(CONTACT, p=PHONE))["contact"]["id"]

    # What is held about the contact, as an ADMIN key exports it.
    export = (await gql(EXPORT, id=contact_id))["exportContact"]
    held = export["contact"]
    assert held["phone"] == PHONE and held["tags"] == ["vip"] and held["variables"] == {"first_name": "Ana"}
    assert [entry["opted_in"] for entry in held["consent_log"]] == [True]
    assert held["runs"][0]["steps"] and held["timers"][0]["node"] == "wait"
    assert [i["kind"] for i in export["identities"]] == ["phone"]
    texts = [m.get("text") for m in export["messages"]]
    assert "hola" in texts and "Hola Ana" in texts
    timer_id = arq_job_id(held["timers"][0]["id"])
    assert await runtime.redis.exists(job_key_prefix + timer_id)  # armed in Redis
    assert await runtime.redis.zscore(timer_queue(runtime.prefix), timer_id) is not None

    # AGENT keys may do neither.
    agent = client_for(runtime, await make_workspace(runtime, WORKSPACE, role="AGENT"))
    try:
        for query in (EXPORT, ERASE):
            with pytest.raises(GraphQLErrors) as caught:
                await agent(query, id=contact_id)
            assert caught.value.codes == ["FORBIDDEN"]
    finally:
        await agent.http.aclose()
    outbound = [m for m in export["messages"] if m.get("direction") == "out"]
    assert outbound
    provider_id = outbound[0].get("provider_id") or outbound[0]["_id"]  # the sandbox's id is ours

    assert (await gql(ERASE, id=contact_id))["eraseContact"] is True
    left = await held_about(runtime, contact_id)
    assert list(left) == ["contacts"] and len(left["contacts"]) == 1  # the tombstone alone
    tombstone = left["contacts"][0]
    assert PHONE not in str(tombstone) and "Ana" not in str(tombstone) and "hola" not in str(tombstone)
    assert tombstone["erased_by"].startswith("key:") and tombstone["erased_at"] is not None
    assert len(tombstone["identity_hashes"]) == 1
    assert not await runtime.redis.exists(job_key_prefix + timer_id)  # the timer is gone from Redis
    assert await runtime.redis.zscore(timer_queue(runtime.prefix), timer_id) is None
    assert (await gql(CONTACT, p=PHONE))["contact"] is None
    assert (await gql("query($id: ID!) { contact(id: $id) { id } }", id=contact_id))["contact"] is None
    assert (await gql("{ contacts { totalCount } }"))["contacts"]["totalCount"] == 0
    with pytest.raises(GraphQLErrors) as caught:
        await gql(EXPORT, id=contact_id)
    assert caught.value.codes == ["NOT_FOUND"]

    # A late status about an erased message is recognised and brings nobody back.
    late = StatusReport(provider_id=provider_id, status="read", at=runtime.clock.now())
    assert await runtime.ledger.report(WORKSPACE, None, late) == "parked"
    assert await erased_message(runtime.services, WORKSPACE, provider_id) is True
    assert await erased_message(runtime.services, WORKSPACE, "wamid.someone-else") is False
    assert (await gql("{ contacts { totalCount } }"))["contacts"]["totalCount"] == 0

    # The person writes again: a fresh contact, nothing of the old one.
    await gql(SAY, p=PHONE)
    again = await eventually(lambda: gql(CONTACT, p=PHONE), lambda found: found["contact"] is not None)
    assert again["contact"]["id"] != contact_id and again["contact"]["runs"] == []
    fresh = (await gql(EXPORT, id=again["contact"]["id"]))["exportContact"]
    assert fresh["contact"]["tags"] == [] and [m.get("text") for m in fresh["messages"]] == ["hola"]


async def test_events_for_an_erased_contact_leave_its_tombstone_as_it_is(runtime: Runtime) -> None:
    """A late message or command for an erased contact is answered (unchanged, with the tombstone)
    and resurrects nobody: the stored tombstone is not written again."""
    await make_workspace(runtime)
    assert runtime.actors is not None
    key = ContactKey(WORKSPACE, "+34600900077")
    now = runtime.clock.now()
    await runtime.actors.ask(key, InboundMessage(new_id("in"), now, text="hola"))
    tombstone = {"erased_at": now, "erased_by": "usr_1", "identity_hashes": [], "erased_messages": 1}
    await runtime.actors.ask(key, EraseContact(new_id("evt"), tombstone=tombstone))
    erased = await runtime.contacts.load(key)
    assert erased is not None and erased["erased_at"] is not None
    for late in (
        InboundMessage(new_id("in"), now, text="sigo aqui"),
        SetVariables(new_id("evt"), {"size": "M"}),
    ):
        result = await runtime.actors.ask(key, late)
        assert result.changed is False and not result.duplicate, type(late).__name__
        assert result.contact["erased_at"] == erased["erased_at"], type(late).__name__
    assert await runtime.contacts.load(key) == erased
