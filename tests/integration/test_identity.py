"""Customers without phone numbers, through Meta's webhooks and the Graph API fake on the real store.

Since 2026 WhatsApp users may adopt a username and withhold their number; Meta names every user by
a business-scoped user ID (BSUID) instead (tests/conformance/whatsapp-bsuid.md). A contact has a
stable id and is found by any of its identities; these tests follow one customer from
username-only to sharing their number, through BSUID changes, sends to a BSUID (and the
authentication template Meta refuses there), concurrent first messages on two replicas, and the
merge of two contacts that turn out to be one person.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from server.actors.events import TagContact
from server.clock import SystemClock
from server.config import Settings
from server.ids import ContactKey, new_id
from server.runtime import Runtime
from server.web.app import create_app
from tests.integration.conftest import WORKSPACE, client_for, make_workspace, publish
from tests.support.clock import ShiftedClock
from tests.support.graph_api_fake import GraphApiFake
from tests.support.graphql import GraphQLClient, eventually
from tests.support.network import HostsResolver
from tests.support.whatsapp import connect_fake
from tests.support.whatsapp_people import (
    WhatsAppUser,
    bsuid_changed,
    bsuid_changed_message,
    message_from,
    new_bsuid,
    number_changed,
    status_of,
)
from tests.support.whatsapp_webhooks import WebhookClient

CONTACT = """query($w: String!) { contact(whatsappId: $w) {
  id phone bsuid parentBsuid username name tags variables optedIn mergedInto
  runs { id status node endReason steps { node action outcome detail } } } }"""
START = "mutation($f: ID!, $w: String!) { startFlow(flowId: $f, whatsappId: $w) { id status node } }"
AGENT_SAYS = """mutation($w: String!, $t: String!) {
  sendAgentMessage(whatsappId: $w, text: $t) { id phone status } }"""

SIZE_FLOW = {
    "name": "Talla",
    "start": "ask",
    "nodes": [
        {
            "id": "ask",
            "type": "message",
            "text": "¿Te reservamos tu talla?",
            "buttons": [
                {"id": "yes", "title": "Sí", "next": "size"},
                {"id": "no", "title": "No", "next": None},
            ],
            "no_reply": {"after": "1h", "next": None},
        },
        {"id": "size", "type": "message", "text": "¿Qué talla usas?", "on_reply": "save"},
        {"id": "save", "type": "set_variable", "field": "size", "value": {"from": "reply"}, "next": "wait"},
        {"id": "wait", "type": "delay", "for": "2h", "next": "thanks"},
        {"id": "thanks", "type": "message", "text": "Tu talla {{contact.size}} está reservada", "next": None},
    ],
}


@pytest.fixture
def clock() -> ShiftedClock:
    return ShiftedClock(SystemClock())


@pytest.fixture
async def runtime(fast_settings: Settings, clock: ShiftedClock) -> AsyncIterator[Runtime]:
    runtime = Runtime(fast_settings, clock=clock, resolver=HostsResolver())
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


@pytest.fixture
async def channel(runtime: Runtime, api_key: str, fake: GraphApiFake) -> dict[str, Any]:
    return await connect_fake(runtime, WORKSPACE, fake)


@pytest.fixture
def meta(gql: GraphQLClient, channel: dict[str, Any]) -> WebhookClient:
    """Meta posting signed webhooks to the channel (``connect_fake``'s app secret)."""
    return WebhookClient(gql.http, channel["_id"], app_secret="app-secret")


async def contact(gql: GraphQLClient, whatsapp_id: str) -> dict[str, Any] | None:
    return (await gql(CONTACT, w=whatsapp_id))["contact"]


async def post(meta: WebhookClient, body: dict[str, Any]) -> None:
    response = await meta.post(body)
    assert response.status_code == 200, response.text


async def sent_count(fake: GraphApiFake, count: int) -> list[dict[str, Any]]:
    async def probe() -> list[dict[str, Any]]:
        return fake.sent()

    return await eventually(probe, lambda found: len(found) >= count)


async def contacts_in_store(runtime: Runtime) -> list[dict[str, Any]]:
    return await runtime.database.collection("contacts").find({"workspace_id": WORKSPACE}).to_list()


async def test_a_username_only_customer_runs_a_whole_flow_and_stays_one_contact_once_they_share_a_number(
    gql: GraphQLClient, runtime: Runtime, meta: WebhookClient, fake: GraphApiFake, clock: ShiftedClock
) -> None:
    flow_id = await publish(gql, SIZE_FLOW)
    lucia = WhatsAppUser(bsuid=new_bsuid(), username="@lucia.modas", name="Lucía")
    await post(meta, message_from(lucia, text="Hola", at=clock.now()))
    run = (await gql(START, f=flow_id, w=lucia.bsuid))["startFlow"]
    assert (run["status"], run["node"]) == ("WAITING", "ask")

    [question] = await sent_count(fake, 1)
    assert question["recipient"] == lucia.bsuid and "to" not in question  # no number to send to
    assert [b["reply"]["id"] for b in question["interactive"]["action"]["buttons"]] == ["yes", "no"]
    answer = next(r.answer for r in fake.requests if r.status == 200)
    assert answer["contacts"] == [{"input": lucia.bsuid, "user_id": lucia.bsuid}]

    await post(meta, message_from(lucia, button=("yes", "Sí"), at=clock.now()))
    await sent_count(fake, 2)
    await post(meta, message_from(lucia, text="M", at=clock.now()))
    waiting = await eventually(
        lambda: contact(gql, lucia.bsuid), lambda c: c is not None and c["runs"][-1]["node"] == "wait"
    )
    assert waiting["variables"] == {"size": "M"} and waiting["runs"][-1]["status"] == "WAITING"
    assert (waiting["phone"], waiting["bsuid"], waiting["username"]) == (None, lucia.bsuid, "@lucia.modas")

    clock.advance(timedelta(hours=2, minutes=1))  # the delay's timer falls due
    done = await eventually(
        lambda: contact(gql, lucia.bsuid), lambda c: c["runs"][-1]["status"] == "COMPLETED"
    )
    thanks = (await sent_count(fake, 3))[2]
    assert thanks["recipient"] == lucia.bsuid and thanks["text"]["body"] == "Tu talla M está reservada"

    # Later Meta shares her number again (she wrote after the contact book recorded it).
    lucia.phone = "+34611222333"
    await post(meta, message_from(lucia, text="Soy yo, con mi número", at=clock.now()))
    by_phone = await eventually(lambda: contact(gql, lucia.phone or ""), lambda c: c is not None)
    assert by_phone["id"] == done["id"] and by_phone["phone"] == "+34611222333"
    assert len(await contacts_in_store(runtime)) == 1
    sent = (await gql(AGENT_SAYS, w=lucia.bsuid, t="¡Gracias, Lucía!"))["sendAgentMessage"]
    assert sent["phone"] == "+34611222333"
    reply = (await sent_count(fake, 4))[3]
    assert reply["to"] == "34611222333" and "recipient" not in reply  # Meta: phone numbers where known


async def test_a_status_teaches_a_phone_contact_its_bsuid(
    gql: GraphQLClient, runtime: Runtime, meta: WebhookClient, fake: GraphApiFake, clock: ShiftedClock
) -> None:
    """A customer we know by phone: the status of our message names their BSUID; when they later
    write username-only, they are the same contact."""
    marta = WhatsAppUser(bsuid=new_bsuid("ES"), phone="+34622000111", name="Marta")
    await gql('mutation { createTag(name: "vip", kind: MARKETING) { id } }')
    await gql('mutation($p: String!) { tagContact(phone: $p, tag: "vip") { id } }', p=marta.phone)
    await gql(
        'mutation($p: String!) { sandboxInbound(phone: $p, text: "hola") }', p=marta.phone
    )  # opens the window (any channel will do)
    await gql(AGENT_SAYS, w=marta.phone, t="¿En qué te ayudamos?")
    [sent] = await sent_count(fake, 1)
    assert sent["to"] == "34622000111"
    request = next(r for r in fake.requests if r.status == 200)
    await post(meta, status_of(marta, request, "delivered", at=clock.now()))
    learned = await eventually(lambda: contact(gql, marta.phone or ""), lambda c: c["bsuid"] == marta.bsuid)
    marta.phone = None  # she adopts a username and withholds her number
    marta.username = "@marta"
    await post(meta, message_from(marta, text="Hola de nuevo", at=clock.now()))
    again = await eventually(lambda: contact(gql, marta.bsuid), lambda c: c["username"] == "@marta")
    assert again["id"] == learned["id"] and again["tags"] == ["vip"] and again["phone"] == "+34622000111"
    assert len(await contacts_in_store(runtime)) == 1


async def test_user_id_update_and_system_messages_move_the_bsuid_and_the_number(
    gql: GraphQLClient, runtime: Runtime, meta: WebhookClient, clock: ShiftedClock
) -> None:
    pablo = WhatsAppUser(bsuid=new_bsuid(), username="@pablo")
    await post(meta, message_from(pablo, text="Hola", at=clock.now()))
    first = await eventually(lambda: contact(gql, pablo.bsuid), lambda c: c is not None)

    renewed = new_bsuid()
    await post(meta, bsuid_changed(pablo, renewed, at=clock.now()))
    moved = await contact(gql, renewed)
    assert moved is not None and moved["id"] == first["id"] and moved["bsuid"] == renewed
    assert await contact(gql, pablo.bsuid) is None  # the old BSUID names nobody any more
    await post(meta, bsuid_changed(pablo, renewed, at=clock.now()))  # Meta retries: nothing changes
    pablo.bsuid = renewed
    await post(meta, message_from(pablo, text="Sigo aquí", at=clock.now()))
    assert (await contact(gql, renewed) or {})["id"] == first["id"]
    third = new_bsuid()
    await post(meta, bsuid_changed_message(pablo, third, at=clock.now()))  # the system message way
    assert (await contact(gql, third) or {})["id"] == first["id"] and await contact(gql, renewed) is None
    pablo.bsuid = third

    pablo.phone = "+34633000222"
    await post(meta, message_from(pablo, text="Ahora con número", at=clock.now()))
    await eventually(lambda: contact(gql, "+34633000222"), lambda c: c is not None and c["id"] == first["id"])
    await post(meta, number_changed(pablo, "+34633000999", at=clock.now()))
    renumbered = await contact(gql, "+34633000999")
    assert (
        renumbered is not None and renumbered["id"] == first["id"] and renumbered["phone"] == "+34633000999"
    )
    assert await contact(gql, "+34633000222") is None
    assert len(await contacts_in_store(runtime)) == 1


async def test_an_authentication_template_to_a_bsuid_fails_with_131062_and_takes_the_failure_path(
    gql: GraphQLClient, runtime: Runtime, meta: WebhookClient, fake: GraphApiFake, clock: ShiftedClock
) -> None:
    await gql(
        "mutation($i: TemplateInput!) { createTemplate(input: $i) { id } }",
        i={
            "name": "login_code",
            "language": "es",
            "category": "AUTHENTICATION",
            "components": [{"type": "BODY", "text": "{{1}} es tu código de acceso"}],
        },
    )
    flow = {
        "name": "Código",
        "start": "hi",
        "nodes": [
            {"id": "hi", "type": "message", "text": "Te enviamos tu código", "next": "code"},
            {
                "id": "code",
                "type": "template",
                "template": "login_code",
                "language": "es",
                "params": {"body": ["482913"]},
                "no_reply": {"after": "10m", "next": None},  # waits for the code to be used
                "on_failure": "by_phone",
            },
            {"id": "by_phone", "type": "tag", "add": ["needs-phone"], "next": None},
        ],
    }
    flow_id = await publish(gql, flow)
    ana = WhatsAppUser(bsuid=new_bsuid("MX"), username="@ana")
    await post(meta, message_from(ana, text="Quiero entrar", at=clock.now()))
    await gql(START, f=flow_id, w=ana.bsuid)
    done = await eventually(lambda: contact(gql, ana.bsuid), lambda c: c["runs"][-1]["status"] == "COMPLETED")
    assert done["tags"] == ["needs-phone"]
    failed = [
        s for s in done["runs"][-1]["steps"] if s["outcome"] == "FAILED" or "131062" in str(s["detail"])
    ]
    assert failed and "131062" in str(failed[0]["detail"]), done["runs"][-1]["steps"]
    refused = [r for r in fake.requests if r.status == 400]
    assert refused and refused[0].body["recipient"] == ana.bsuid and refused[0].body["type"] == "template"
    [text] = fake.sent()
    assert text["recipient"] == ana.bsuid  # the simple message went to the BSUID
    stored = await runtime.messages.conversation(await _key(runtime, ana.bsuid), 10)
    failed_message = next(m for m in stored if m.get("template"))
    assert failed_message["status"] == "failed" and failed_message["error_code"] == "131062"


async def _key(runtime: Runtime, bsuid: str) -> Any:
    from tests.support.contacts import key_of

    return await key_of(runtime, WORKSPACE, bsuid=bsuid)


async def test_two_replicas_taking_one_persons_first_messages_at_once_make_one_contact(
    fast_settings: Settings,
) -> None:
    replicas = []
    for n in range(2):
        settings = fast_settings.model_copy(update={"replica_id": f"replica{n}-{uuid.uuid4().hex[:6]}"})
        replica = Runtime(settings, resolver=HostsResolver())
        await replica.start()
        replicas.append(replica)
    fake = await GraphApiFake().start()
    clients: list[httpx.AsyncClient] = []
    try:
        await make_workspace(replicas[0])
        channel = await connect_fake(replicas[0], WORKSPACE, fake)
        hooks = []
        for replica in replicas:
            http = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=create_app(replica.settings, runtime=replica)),
                base_url="http://konvo.test",
            )
            clients.append(http)
            hooks.append(WebhookClient(http, channel["_id"], app_secret="app-secret"))
        people = [WhatsAppUser(bsuid=new_bsuid()) for _ in range(12)]
        for i, person in enumerate(people):
            numbered = WhatsAppUser(bsuid=person.bsuid, phone=f"+3464400{i:04d}") if i % 3 == 0 else person
            first, second = message_from(person, text="¿Hola?"), message_from(numbered, text="¿Hay alguien?")
            answers = await asyncio.gather(hooks[0].post(first), hooks[1].post(second))
            assert [a.status_code for a in answers] == [200, 200]

        async def settled() -> list[dict[str, Any]]:
            return (
                await replicas[0].database.collection("contacts").find({"workspace_id": WORKSPACE}).to_list()
            )

        def messages(contact: dict[str, Any]) -> list[str]:
            return [e for e in contact.get("applied_events", []) if "wamid." in e]

        stored = await eventually(settled, lambda found: sum(len(messages(c)) for c in found) == 24)
        # One contact each, both messages on it, and no merge needed: the loser of a race joins in.
        assert sorted(c["bsuid"] for c in stored) == sorted(p.bsuid for p in people)
        assert all(len(messages(c)) == 2 and not c.get("merged_into") for c in stored)
        identities = replicas[0].database.collection("identities")
        assert await identities.count_documents({"workspace_id": WORKSPACE, "kind": "bsuid"}) == 12
    finally:
        for http in clients:
            await http.aclose()
        await fake.stop()
        for replica in replicas:
            await replica.stop()


async def test_two_contacts_found_to_be_one_person_merge_by_the_rule(
    gql: GraphQLClient, runtime: Runtime, meta: WebhookClient, fake: GraphApiFake, clock: ShiftedClock
) -> None:
    """A phone contact (older) and a username-only contact (newer) turn out to be one person."""
    await gql('mutation { createTag(name: "vip", kind: MARKETING) { id } }')
    await gql('mutation { createTag(name: "b2b", kind: MARKETING) { id } }')
    await gql('mutation { createField(name: "city", type: TEXT) { id } }')
    await gql('mutation { createField(name: "size", type: TEXT) { id } }')
    phone, person = "+34655000111", WhatsAppUser(bsuid=new_bsuid("ES"), username="@eva", name="Eva")
    await gql('mutation($p: String!) { tagContact(phone: $p, tag: "vip") { id } }', p=phone)
    await gql(
        'mutation($p: String!) { setVariable(phone: $p, field: "city", value: "Bilbao") { id } }', p=phone
    )
    await gql('mutation($p: String!) { setVariable(phone: $p, field: "size", value: "S") { id } }', p=phone)
    await gql("mutation($p: String!) { setOptIn(phone: $p, optedIn: true) { id } }", p=phone)
    older = await contact(gql, phone)
    assert older is not None

    flow_id = await publish(gql, SIZE_FLOW)
    clock.advance(timedelta(minutes=1))
    await post(meta, message_from(person, text="Hola", at=clock.now()))
    await gql(START, f=flow_id, w=person.bsuid)
    await gql('mutation($w: String!) { tagContact(whatsappId: $w, tag: "b2b") { id } }', w=person.bsuid)
    await gql(
        'mutation($w: String!) { setVariable(whatsappId: $w, field: "size", value: "L") { id } }',
        w=person.bsuid,
    )
    await gql("mutation($w: String!) { setOptIn(whatsappId: $w, optedIn: false) { id } }", w=person.bsuid)
    newer = await contact(gql, person.bsuid)
    assert newer is not None and newer["id"] != older["id"] and newer["runs"][-1]["status"] == "WAITING"

    person.phone = phone  # one webhook names both: the phone of the older, the BSUID of the newer
    await post(meta, message_from(person, text="Soy Eva", at=clock.now()))
    merged = await eventually(lambda: contact(gql, person.bsuid), lambda c: c["id"] == older["id"])
    assert merged["tags"] == ["vip", "b2b"]  # the union, the survivor's first
    assert merged["variables"] == {"city": "Bilbao", "size": "S"}  # the survivor's values win
    assert merged["optedIn"] is False  # the most restrictive consent: withdrawn on one side
    assert (merged["phone"], merged["bsuid"], merged["username"]) == (phone, person.bsuid, "@eva")

    absorbed = await runtime.contacts.get(WORKSPACE, newer["id"])
    assert absorbed is not None and absorbed["merged_into"] == older["id"]
    [run] = absorbed["runs"]
    assert run["status"] == "cancelled" and run["end_reason"] == f"MERGED_INTO:{older['id']}"
    assert absorbed["timers"] == []
    conversation = await runtime.messages.conversation(await _key(runtime, person.bsuid), 50)
    assert {m.get("text") for m in conversation if m["direction"] == "in"} == {"Hola", "Soy Eva"}
    merges = runtime.database.collection("contact_merges")
    assert await merges.count_documents({"_id": newer["id"], "into": older["id"], "state": "done"}) == 1
    # The absorbed contact's id still leads to the person: its actor hands events to the survivor.
    again = await gql('mutation($w: String!) { tagContact(whatsappId: $w, tag: "vip") { id tags } }', w=phone)
    assert again["tagContact"]["id"] == older["id"]
    assert runtime.actors is not None  # also an event told to the absorbed contact's own key
    late = await runtime.actors.ask(
        ContactKey.from_doc_id(absorbed["_id"]), TagContact(new_id("evt"), add=("late",))
    )
    assert late.contact["_id"] != absorbed["_id"] and "late" in late.contact["tags"]
    assert (await runtime.contacts.get(WORKSPACE, newer["id"])) == absorbed
    live = [c for c in await contacts_in_store(runtime) if not c.get("merged_into")]
    assert [c["_id"] for c in live] == [older["id"]]


async def test_the_api_names_contacts_by_phone_or_whatsapp_id_one_at_a_time(
    gql: GraphQLClient, runtime: Runtime
) -> None:
    bsuid = new_bsuid()
    said = 'mutation($b: String!) { sandboxInbound(bsuid: $b, username: "@sam", text: "hola") }'
    assert (await gql(said, b=bsuid))["sandboxInbound"] is True
    found = await contact(gql, bsuid)
    assert found is not None and found["phone"] is None and found["username"] == "@sam"
    outbox = "query($w: String!) { sandboxOutbox(whatsappId: $w) { text } }"
    assert (await gql(outbox, w=bsuid))["sandboxOutbox"] == []
    await gql('mutation { createTag(name: "x", kind: MARKETING) { id } }')
    both = await client_for(runtime, gql.api_key).raw(
        'mutation { tagContact(phone: "+34600000001", whatsappId: "US.1", tag: "x") { id } }'
    )
    assert both["errors"][0]["extensions"]["code"] == "INVALID_INPUT"
    assert "one of the two" in both["errors"][0]["message"]
    bad = await client_for(runtime, gql.api_key).raw(
        'mutation { sandboxInbound(bsuid: "not-a-bsuid", text: "hola") }'
    )
    assert (
        bad["errors"][0]["extensions"]["code"] == "INVALID_INPUT" and "bsuid" in bad["errors"][0]["message"]
    )
