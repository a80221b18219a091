"""The seeded demo workspace demos: "hola" walks a real flow, a webhook starts another, VIP routing
answers any other message; seeding again changes nothing (issue 14, item 11)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from server.config import Settings
from server.dev.seed import DEMO_WORKSPACE, seed_demo
from server.runtime import Runtime
from server.triggers.signatures import konvo_header
from tests.integration.conftest import client_for
from tests.support.graphql import GraphQLClient, eventually

CONVERSATION = """query($p: String!) { conversation(phone: $p) { messages(last: 50) {
  direction text buttonId rendered { header { kind text } body footer asList text
  buttons { kind title id number url code } } } } }"""
SAY = "mutation($p: String!, $t: String, $b: String) { sandboxInbound(phone: $p, text: $t, buttonId: $b) }"
CONTACT = """query($p: String!) { contact(phone: $p) {
  tags variables agent { email } runs { flowName status } } }"""


@pytest.fixture
async def demo(fast_settings: Settings) -> AsyncIterator[tuple[Runtime, GraphQLClient]]:
    api_key = await seed_demo(fast_settings)
    runtime = Runtime(fast_settings)
    await runtime.start()
    client = client_for(runtime, api_key)
    try:
        yield runtime, client
    finally:
        await client.http.aclose()
        await runtime.stop()


async def bot_messages(gql: GraphQLClient, phone: str) -> list[dict[str, Any]]:
    conversation = (await gql(CONVERSATION, p=phone))["conversation"]
    return [m for m in (conversation or {}).get("messages", []) if m["direction"] == "OUT"]


async def test_hola_walks_buttons_a_typed_answer_a_tag_and_a_handoff(
    demo: tuple[Runtime, GraphQLClient],
) -> None:
    _, gql = demo
    phone = "+34600000000"
    await gql(SAY, p=phone, t="Hola")
    menu = (await bot_messages(gql, phone))[-1]["rendered"]
    assert menu["header"] == {"kind": "TEXT", "text": "¡Bienvenido a Demo shop!"}
    assert menu["body"] == (
        "Hola 👋 Soy el asistente de la tienda. El envío es gratis en pedidos desde 50 €. ¿En qué te ayudamos?"
    )
    assert menu["footer"] == "Responde con el número de una opción"
    assert menu["asList"] is True  # five buttons: WhatsApp shows a list
    assert [(b["kind"], b["title"], b["id"], b["number"]) for b in menu["buttons"]] == [
        ("QUICK_REPLY", "Mi pedido", "order", 1),
        ("QUICK_REPLY", "Ver ofertas", "offers", 2),
        ("QUICK_REPLY", "Hablar con Ana", "agent", 3),
        ("URL", "Visitar la tienda", None, None),
        ("COPY_CODE", "Copiar código", None, None),
    ]
    assert menu["buttons"][3]["url"] == "https://shop.example/ofertas"
    assert menu["buttons"][4]["code"] == "HOLA10"

    await gql(SAY, p=phone, t="Mi pedido", b="order")
    await gql(SAY, p=phone, t="A-1001")
    await gql(SAY, p=phone, t="24/12/2026")
    await gql(SAY, p=phone, t="Lucía")
    texts = [m["text"] for m in await bot_messages(gql, phone)]
    assert texts[1:] == [
        "¿Cuál es tu número de pedido?",
        "¿Qué día lo hiciste? (por ejemplo, 24/12/2026)",
        "Anotado: pedido A-1001 del 24/12/2026 (jueves).",
        "¿Cómo te llamas?",
        "Gracias, Lucía. Ana te atiende en un momento.",
    ]
    contact = (await gql(CONTACT, p=phone))["contact"]
    assert contact["tags"] == ["needs-follow-up"]
    assert contact["agent"] == {"email": "ana@shop.example"}
    assert contact["variables"] == {
        "last_order": "A-1001",
        "order_date": "2026-12-23T23:00:00+00:00",  # midnight in Europe/Madrid
        "first_name": "Lucía",
    }
    assert contact["runs"] == [{"flowName": "Welcome", "status": "COMPLETED"}]


async def test_other_messages_go_to_vip_routing_and_ofertas_to_the_opt_in(
    demo: tuple[Runtime, GraphQLClient],
) -> None:
    _, gql = demo
    await gql(SAY, p="+34600000001", t="¿Tenéis tallas grandes?")
    assert [m["text"] for m in await bot_messages(gql, "+34600000001")] == [
        "¡Gracias por escribir! Te respondemos en menos de una hora."
    ]
    await gql(SAY, p="+34600000002", t="ofertas")
    offer = (await bot_messages(gql, "+34600000002"))[-1]["rendered"]
    assert offer["text"] == (
        "¿Quieres recibir nuestras ofertas por WhatsApp?\n[1] Sí, quiero\n[2] No, gracias"
    )


async def test_the_order_webhook_starts_the_order_update(demo: tuple[Runtime, GraphQLClient]) -> None:
    _, gql = demo
    flows = {f["name"]: f["id"] for f in (await gql("{ flows { id name } }"))["flows"]}
    hooks = (await gql("{ webhookTriggers { id url flowId } }"))["webhookTriggers"]
    by_flow = {h["flowId"]: h for h in hooks}
    assert set(by_flow) == {flows["Order update with feedback"], flows["Abandoned cart"]}
    hook = by_flow[flows["Order update with feedback"]]
    # A secret is shown only when made: the demo's user gets one by rotating it (docs/sandbox.md).
    rotated = await gql(
        "mutation($id: ID!) { rotateWebhookTriggerSecret(id: $id) { secret } }", id=hook["id"]
    )
    hook["secret"] = rotated["rotateWebhookTriggerSecret"]["secret"]
    payload = {
        "order": {"id": "1042", "tracking_url": "https://track.example/1042"},
        "customer": {"phone": "600 123 456"},
    }
    body = json.dumps(payload).encode()
    response = await gql.http.post(
        "/hooks/" + hook["url"].rsplit("/", 1)[1],
        content=body,
        headers={"X-Konvo-Signature": konvo_header(hook["secret"], body, int(time.time()))},
    )
    assert response.status_code == 202, response.text
    sent = await eventually(lambda: bot_messages(gql, "+34600123456"), lambda found: len(found) == 1)
    assert sent[0]["text"] == "Tu pedido 1042 ha salido. Síguelo aquí: https://track.example/1042"


async def test_seeding_again_changes_nothing_and_keeps_a_deleted_trigger_deleted(
    demo: tuple[Runtime, GraphQLClient], fast_settings: Settings
) -> None:
    runtime, gql = demo
    inbound = "{ inboundTriggers { id kind keywords flowId } }"
    before = (await gql(inbound))["inboundTriggers"]
    flows = {f["name"]: f["id"] for f in (await gql("{ flows { id name } }"))["flows"]}
    assert {(t["flowId"], t["kind"]) for t in before} == {
        (flows["Welcome"], "KEYWORD"),
        (flows["Opt-in collection"], "KEYWORD"),
        (flows["VIP routing"], "ANY_MESSAGE"),
    }
    vip = next(t for t in before if t["kind"] == "ANY_MESSAGE")
    await gql("mutation($id: ID!) { deleteInboundTrigger(id: $id) }", id=vip["id"])
    await seed_demo(fast_settings)
    after = (await gql(inbound))["inboundTriggers"]
    assert sorted(t["id"] for t in after) == sorted(t["id"] for t in before if t["id"] != vip["id"])
    assert len((await gql("{ webhookTriggers { id } }"))["webhookTriggers"]) == 2
    assert len((await gql("{ flows { id } }"))["flows"]) == len(flows)
    workspace = (await gql("{ workspace { timezone locale } }"))["workspace"]
    assert workspace == {"timezone": "Europe/Madrid", "locale": "es-ES"}
    assert (await runtime.workspaces.get(DEMO_WORKSPACE) or {}).get("locale") == "es-ES"
