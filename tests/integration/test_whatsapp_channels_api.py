"""Issue 17, gap 2: a workspace's WhatsApp numbers through GraphQL, each a Graph API fake on loopback.

Every connected number is listed; connecting one again updates it; a channel's token, base URL
(within the egress policy), display phone, tier and default are changed by
``updateWhatsAppChannel``; ``disconnectWhatsApp`` keeps the history and answers its webhook 410.
Each flow, trigger, broadcast and run start may choose its number; the rest goes through the
workspace's default; a customer is answered on the number they wrote to.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from server.ids import new_id
from server.runtime import Runtime
from server.triggers.signatures import konvo_header
from tests.integration.conftest import client_for, make_workspace, publish
from tests.support.graph_api_fake import GraphApiFake
from tests.support.graphql import GraphQLClient, GraphQLErrors, eventually
from tests.support.whatsapp import FAST_RETRIES
from tests.support.whatsapp_webhooks import WebhookClient, message_of, payload, value_of

APP_SECRET = "channels-app-secret"
VERIFY = "channels-verify-token"
CHANNEL = """id phoneNumberId wabaId displayPhone baseUrl throughputPerSecond status isDefault
  disconnectedAt webhookUrl"""
CONNECT = f"mutation($i: ConnectWhatsAppInput!) {{ connectWhatsApp(input: $i) {{ {CHANNEL} verifyToken }} }}"
UPDATE = f"""mutation($id: ID!, $i: UpdateWhatsAppChannelInput!) {{
  updateWhatsAppChannel(id: $id, input: $i) {{ {CHANNEL} }} }}"""
LIST = f"query($all: Boolean!) {{ whatsappChannels(includeDisconnected: $all) {{ {CHANNEL} }} }}"
START = """mutation($f: ID!, $p: String!, $c: ID) {
  startFlow(flowId: $f, phone: $p, channelId: $c) { id channelId } }"""
SET_FLOW_CHANNEL = "mutation($f: ID!, $c: ID) { setFlowChannel(id: $f, channelId: $c) { id channelId } }"
MESSAGES = """query($p: String!) { conversation(phone: $p) {
  messages { direction text channelId providerMessageId } } }"""


@pytest.fixture
async def fakes(runtime: Runtime) -> AsyncIterator[tuple[GraphApiFake, GraphApiFake]]:
    """Two numbers of the shop, each its own Graph API (their own tokens and number ids)."""
    runtime.graph.policy = FAST_RETRIES
    first = await GraphApiFake(phone_number_id="111000111", token="token-a").start()
    second = await GraphApiFake(phone_number_id="222000222", token="token-b").start()
    try:
        yield first, second
    finally:
        await first.stop()
        await second.stop()


async def connect(gql: GraphQLClient, fake: GraphApiFake, **changes: Any) -> dict[str, Any]:
    data = await gql(
        CONNECT,
        i={
            "phoneNumberId": fake.phone_number_id,
            "wabaId": fake.waba_id,
            "accessToken": fake.token,
            "appSecret": APP_SECRET,
            "verifyToken": VERIFY,
            "baseUrl": fake.url,
            "apiVersion": fake.version,
            **changes,
        },
    )
    return data["connectWhatsApp"]


async def channels(gql: GraphQLClient, include_disconnected: bool = False) -> list[dict[str, Any]]:
    return (await gql(LIST, all=include_disconnected))["whatsappChannels"]


def hello(name: str, text: str) -> dict[str, Any]:
    return {
        "name": name,
        "start": "hi",
        "nodes": [{"id": "hi", "type": "message", "text": text, "next": None}],
    }


def texts_to(fake: GraphApiFake, phone: str) -> list[str]:
    return [b["text"]["body"] for b in fake.sent() if b["to"] == phone.lstrip("+") and b["type"] == "text"]


async def wait_text(fake: GraphApiFake, phone: str, text: str) -> None:
    async def sent() -> list[str]:
        return texts_to(fake, phone)

    await eventually(sent, lambda found: text in found)


async def open_window(gql: GraphQLClient, phone: str) -> None:
    await gql('mutation($p: String!) { sandboxInbound(phone: $p, text: "hola") }', p=phone)


async def start(
    gql: GraphQLClient, flow_id: str, phone: str, channel_id: str | None = None
) -> dict[str, Any]:
    return (await gql(START, f=flow_id, p=phone, c=channel_id))["startFlow"]


def customer_text(phone_number_id: str, wa_id: str, text: str) -> dict[str, Any]:
    """Meta's webhook body: the customer ``wa_id`` writes ``text`` to the business number."""
    body = payload("text")
    value = value_of(body)
    value["metadata"]["phone_number_id"] = phone_number_id
    value["contacts"][0]["wa_id"] = wa_id
    message = message_of(body)
    message.update(
        id=f"wamid.{new_id('in')}", timestamp=str(int(datetime.now(UTC).timestamp())), text={"body": text}
    )
    message["from"] = wa_id
    return body


async def verified(gql: GraphQLClient, channel: dict[str, Any]) -> WebhookClient:
    hook = WebhookClient(gql.http, channel["id"], app_secret=APP_SECRET)
    answer = await hook.handshake(verify_token=VERIFY, challenge="42")
    assert (answer.status_code, answer.text) == (200, "42")
    return hook


async def test_every_connected_number_is_listed_and_connecting_one_again_updates_it(
    gql: GraphQLClient, fakes: tuple[GraphApiFake, GraphApiFake]
) -> None:
    fake_a, fake_b = fakes
    first = await connect(gql, fake_a)
    second = await connect(gql, fake_b, displayPhone="+34 600 000 222")
    assert first["id"] != second["id"]
    listed = await channels(gql)
    assert [c["id"] for c in listed] == [first["id"], second["id"]]
    assert [c["isDefault"] for c in listed] == [True, False]  # the oldest, until one is chosen
    assert {c["status"] for c in listed} == {"CONNECTED"}

    fake_a.token = "token-a-rotated"  # the same number connected again, e.g. with a new token
    again = await connect(gql, fake_a, accessToken="token-a-rotated", displayPhone="+34 600 000 111")
    assert again["id"] == first["id"] and again["webhookUrl"] == first["webhookUrl"]
    assert again["displayPhone"] == "+34 600 000 111" and again["verifyToken"] == VERIFY
    assert [c["id"] for c in await channels(gql)] == [first["id"], second["id"]]


async def test_each_flow_trigger_broadcast_and_start_chooses_its_number(
    gql: GraphQLClient, fakes: tuple[GraphApiFake, GraphApiFake]
) -> None:
    fake_a, fake_b = fakes
    a = await connect(gql, fake_a)
    b = await connect(gql, fake_b)
    plain = await publish(gql, hello("Por defecto", "hola desde el número por defecto"))
    pinned = await publish(gql, hello("Por B", "hola desde B"))
    assert (await gql(SET_FLOW_CHANNEL, f=pinned, c=b["id"]))["setFlowChannel"]["channelId"] == b["id"]
    phone = "+34600170201"
    await open_window(gql, phone)

    run = await start(gql, plain, phone)  # no channel anywhere: the default (the oldest) sends
    await wait_text(fake_a, phone, "hola desde el número por defecto")
    assert run["channelId"] == a["id"]
    run = await start(gql, pinned, phone)  # the flow's own number
    await wait_text(fake_b, phone, "hola desde B")
    assert run["channelId"] == b["id"]
    await start(gql, plain, phone, channel_id=b["id"])  # startFlow's choice wins
    await eventually(lambda: _count(fake_b, phone), lambda n: n == 2)

    # A webhook trigger with its own number.
    mapping = {"phone": "customer.phone"}
    hook = (
        await gql(
            """mutation($f: ID!, $m: JSON!, $c: ID) {
              createWebhookTrigger(flowId: $f, mapping: $m, channelId: $c) { id secret channelId } }""",
            f=plain,
            m=mapping,
            c=b["id"],
        )
    )["createWebhookTrigger"]
    assert hook["channelId"] == b["id"]
    body = json.dumps({"customer": {"phone": phone}}).encode()
    headers = {"X-Konvo-Signature": konvo_header(hook["secret"], body, int(time.time()))}
    response = await gql.http.post(f"/hooks/{hook['id']}", content=body, headers=headers)
    assert response.status_code == 202, response.text
    await eventually(lambda: _count(fake_b, phone), lambda n: n == 3)

    # A broadcast with its own number.
    await gql('mutation { createTag(name: "vip", kind: MARKETING) { id } }')
    await gql('mutation($p: String!) { tagContact(phone: $p, tag: "vip") { id } }', p=phone)
    created = await gql(
        "mutation($i: BroadcastInput!) { createBroadcast(input: $i) { id channelId } }",
        i={"segment": {"tag": "vip"}, "flowId": plain, "channelId": b["id"], "requireOptIn": False},
    )
    assert created["createBroadcast"]["channelId"] == b["id"]
    await eventually(lambda: _count(fake_b, phone), lambda n: n == 4)
    assert texts_to(fake_a, phone) == ["hola desde el número por defecto"]

    # The default is settable: runs without a channel of their own now start on B.
    chosen = await gql(
        f"mutation($id: ID!) {{ setDefaultWhatsAppChannel(id: $id) {{ {CHANNEL} }} }}", id=b["id"]
    )
    assert chosen["setDefaultWhatsAppChannel"]["isDefault"] is True
    assert [c["isDefault"] for c in await channels(gql)] == [False, True]
    other = "+34600170202"
    await open_window(gql, other)
    assert (await start(gql, plain, other))["channelId"] == b["id"]
    await wait_text(fake_b, other, "hola desde el número por defecto")
    # ...and back through updateWhatsAppChannel's field.
    back = (await gql(UPDATE, id=a["id"], i={"isDefault": True}))["updateWhatsAppChannel"]
    assert back["isDefault"] is True
    assert (await start(gql, plain, other))["channelId"] == a["id"]

    # Every message says which number it went through.
    shown = (await gql(MESSAGES, p=phone))["conversation"]["messages"]
    out = [m for m in shown if m["direction"] == "OUT"]
    assert [m["channelId"] for m in out] == [a["id"], b["id"], b["id"], b["id"], b["id"]]
    assert all(m["providerMessageId"].startswith("wamid.") for m in out)


async def _count(fake: GraphApiFake, phone: str) -> int:
    return len(texts_to(fake, phone))


async def test_a_customer_is_answered_on_the_number_they_wrote_to(
    gql: GraphQLClient, fakes: tuple[GraphApiFake, GraphApiFake]
) -> None:
    fake_a, fake_b = fakes
    a = await connect(gql, fake_a)
    b = await connect(gql, fake_b)
    hook_a, hook_b = await verified(gql, a), await verified(gql, b)
    flow = {
        "name": "Pregunta",
        "start": "ask",
        "nodes": [
            {"id": "ask", "type": "message", "text": "¿De qué ciudad eres?", "on_reply": "thanks"},
            {"id": "thanks", "type": "message", "text": "¡Gracias!", "next": None},
        ],
    }
    flow_id = await publish(gql, flow)
    wa_id = "34600170301"
    phone = "+" + wa_id
    assert (await hook_a.post(customer_text(fake_a.phone_number_id, wa_id, "hola"))).status_code == 200
    await eventually(lambda: _windowed(gql, phone), bool)
    run = await start(gql, flow_id, phone)
    assert run["channelId"] == a["id"]
    await wait_text(fake_a, phone, "¿De qué ciudad eres?")

    # The customer answers on the shop's other number: the run goes on there.
    assert (await hook_b.post(customer_text(fake_b.phone_number_id, wa_id, "Sevilla"))).status_code == 200
    await wait_text(fake_b, phone, "¡Gracias!")
    assert texts_to(fake_a, phone) == ["¿De qué ciudad eres?"]
    stored = await gql("query($id: ID!) { run(id: $id) { channelId status } }", id=run["id"])
    assert stored["run"] == {"channelId": b["id"], "status": "COMPLETED"}

    # An agent's message follows the number the customer last wrote to.
    await gql('mutation($p: String!) { sendAgentMessage(phone: $p, text: "Soy Ana") { id } }', p=phone)
    await wait_text(fake_b, phone, "Soy Ana")

    # A keyword the customer sends to B starts a flow pinned to A, and is answered on B.
    keyword_flow = await publish(gql, hello("Precios", "Nuestros precios"))
    await gql(SET_FLOW_CHANNEL, f=keyword_flow, c=a["id"])
    await gql(
        "mutation($i: InboundTriggerInput!) { createInboundTrigger(input: $i) { id } }",
        i={"flowId": keyword_flow, "kind": "KEYWORD", "keywords": ["precios"]},
    )
    assert (await hook_b.post(customer_text(fake_b.phone_number_id, wa_id, "precios"))).status_code == 200
    await wait_text(fake_b, phone, "Nuestros precios")
    assert "Nuestros precios" not in texts_to(fake_a, phone)

    shown = (await gql(MESSAGES, p=phone))["conversation"]["messages"]
    assert [(m["direction"], m["channelId"]) for m in shown if m["direction"] == "IN"] == [
        ("IN", a["id"]),
        ("IN", b["id"]),
        ("IN", b["id"]),
    ]


async def _windowed(gql: GraphQLClient, phone: str) -> bool:
    found = (await gql("query($p: String!) { contact(phone: $p) { windowOpen } }", p=phone))["contact"]
    return bool(found and found["windowOpen"])


async def test_update_rotates_secrets_sealed_and_keeps_the_base_url_within_the_egress_policy(
    runtime: Runtime, gql: GraphQLClient, fakes: tuple[GraphApiFake, GraphApiFake]
) -> None:
    fake_a, _ = fakes
    a = await connect(gql, fake_a)
    flow_id = await publish(gql, hello("Token", "con el token nuevo"))
    phone = "+34600170401"
    await open_window(gql, phone)

    fake_a.token = "token-a-2"  # Meta issued a new token; the old one is refused from now on
    changed = await gql(
        UPDATE,
        id=a["id"],
        i={"accessToken": "token-a-2", "displayPhone": "+34 600 170 400", "throughputPerSecond": 1000},
    )
    assert changed["updateWhatsAppChannel"]["displayPhone"] == "+34 600 170 400"
    assert changed["updateWhatsAppChannel"]["throughputPerSecond"] == 1000
    await start(gql, flow_id, phone)
    await wait_text(fake_a, phone, "con el token nuevo")
    assert fake_a.requests[-1].headers["authorization"] == "Bearer token-a-2"

    stored = await runtime.database.collection("channels").find_one({"_id": a["id"]})
    assert stored is not None and "token-a-2" not in json.dumps(stored, default=str)  # sealed at rest
    opened = await runtime.channels.get(a["id"])
    assert opened is not None and opened["access_token"] == "token-a-2"

    for url in ("https://169.254.169.254", "http://10.1.2.3:8080", "ftp://bsp.example"):
        with pytest.raises(GraphQLErrors) as refused:
            await gql(UPDATE, id=a["id"], i={"baseUrl": url})
        assert refused.value.codes == ["EGRESS_REFUSED"], url
    with pytest.raises(GraphQLErrors) as bad_tier:
        await gql(UPDATE, id=a["id"], i={"throughputPerSecond": 5000})
    assert bad_tier.value.codes == ["INVALID_INPUT"] and "throughputPerSecond" in str(bad_tier.value)
    assert (await channels(gql))[0]["baseUrl"] == fake_a.url  # nothing refused was kept

    for unknown in ("chn_nope", a["id"] + "x"):
        with pytest.raises(GraphQLErrors) as missing:
            await gql(UPDATE, id=unknown, i={"displayPhone": "x"})
        assert missing.value.codes == ["NOT_FOUND"]


async def test_another_workspaces_channel_cannot_be_used_or_changed(
    runtime: Runtime, gql: GraphQLClient, fakes: tuple[GraphApiFake, GraphApiFake]
) -> None:
    fake_a, _ = fakes
    theirs = await connect(gql, fake_a)
    other = client_for(runtime, await make_workspace(runtime, "ws_other"))
    try:
        flow_id = await publish(other, hello("Ajeno", "hola"))
        attempts = [
            (UPDATE, {"id": theirs["id"], "i": {"accessToken": "stolen"}}),
            ("mutation($id: ID!) { disconnectWhatsApp(id: $id) }", {"id": theirs["id"]}),
            ("mutation($id: ID!) { setDefaultWhatsAppChannel(id: $id) { id } }", {"id": theirs["id"]}),
            (SET_FLOW_CHANNEL, {"f": flow_id, "c": theirs["id"]}),
            (START, {"f": flow_id, "p": "+34600170501", "c": theirs["id"]}),
        ]
        for query, variables in attempts:
            with pytest.raises(GraphQLErrors) as refused:
                await other(query, **variables)
            assert refused.value.codes == ["NOT_FOUND"], query
        assert (await other(LIST, all=True))["whatsappChannels"] == []
    finally:
        await other.http.aclose()
    assert (await channels(gql))[0]["status"] == "CONNECTED"


async def test_disconnect_keeps_the_history_answers_webhooks_410_and_reconnects(
    runtime: Runtime, gql: GraphQLClient, fakes: tuple[GraphApiFake, GraphApiFake]
) -> None:
    fake_a, fake_b = fakes
    a = await connect(gql, fake_a)
    b = await connect(gql, fake_b)
    hook_b = await verified(gql, b)
    flow_id = await publish(gql, hello("Por B", "desde B"))
    await gql(SET_FLOW_CHANNEL, f=flow_id, c=b["id"])
    phone = "+34600170601"
    await open_window(gql, phone)
    await start(gql, flow_id, phone)
    await wait_text(fake_b, phone, "desde B")

    assert (await gql("mutation($id: ID!) { disconnectWhatsApp(id: $id) }", id=b["id"]))["disconnectWhatsApp"]
    assert [c["id"] for c in await channels(gql)] == [a["id"]]
    gone = [c for c in await channels(gql, include_disconnected=True) if c["id"] == b["id"]]
    assert gone[0]["status"] == "DISCONNECTED" and gone[0]["disconnectedAt"]
    stored = await runtime.database.collection("channels").find_one({"_id": b["id"]})
    assert stored is not None and not {"access_token", "app_secret", "verify_token"} & set(stored)

    # Its webhook is answered 410, handshake and events alike; nothing is recorded.
    assert (await hook_b.handshake(verify_token=VERIFY)).status_code == 410
    answer = await hook_b.post(customer_text(fake_b.phone_number_id, phone.lstrip("+"), "¿hola?"))
    assert answer.status_code == 410

    # The history stays; what the flow sends now goes through the default number.
    shown = (await gql(MESSAGES, p=phone))["conversation"]["messages"]
    assert [m["channelId"] for m in shown if m["direction"] == "OUT"] == [b["id"]]
    await start(gql, flow_id, phone)
    await wait_text(fake_a, phone, "desde B")
    assert texts_to(fake_b, phone) == ["desde B"]
    for query, variables in (
        (SET_FLOW_CHANNEL, {"f": flow_id, "c": b["id"]}),
        (START, {"f": flow_id, "p": phone, "c": b["id"]}),
        (UPDATE, {"id": b["id"], "i": {"displayPhone": "x"}}),
    ):
        with pytest.raises(GraphQLErrors) as refused:
            await gql(query, **variables)
        assert refused.value.codes == ["CONFLICT"] and "connectWhatsApp" in str(refused.value)

    # Connecting the number again brings the same channel back, and the flow's messages with it.
    again = await connect(gql, fake_b)
    assert again["id"] == b["id"] and again["status"] == "CONNECTED"
    assert [c["id"] for c in await channels(gql)] == [a["id"], b["id"]]
    await start(gql, flow_id, phone)
    await eventually(lambda: _count(fake_b, phone), lambda n: n == 2)
