"""Interactive messages and what customers send back, end to end on the real store and Redis.

Flows send lists, links, location requests, media carousels and WhatsApp Flows through the
WhatsApp channel to the Graph API fake, which checks every request against Meta's description
(with the 2026 interactive types of ``tests/support/openapi.py`` ``EXTENSIONS``). The customer
answers through Meta's webhook (signed fixtures) or ``sandboxInbound``; what happened is read
through GraphQL.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from server.clock import SystemClock
from server.config import Settings
from server.ids import new_id
from server.runtime import Runtime
from server.web.app import create_app
from tests.integration.conftest import WORKSPACE, publish
from tests.integration.test_nodes import run_of, start_with
from tests.support.clock import ShiftedClock
from tests.support.contacts import key_of
from tests.support.graph_api_fake import GraphApiFake
from tests.support.graphql import GraphQLClient, GraphQLErrors, eventually
from tests.support.whatsapp import connect_fake
from tests.support.whatsapp_webhooks import CUSTOMER, WebhookClient, message_of, payload

VARIABLES = "query($p: String!) { contact(phone: $p) { variables tags } }"
SAY = """mutation($p: String!, $t: String, $b: String, $l: LocationInput, $f: JSON) {
  sandboxInbound(phone: $p, text: $t, buttonId: $b, location: $l, flowResponse: $f) }"""


@pytest.fixture
def clock() -> ShiftedClock:
    return ShiftedClock(SystemClock())


@pytest.fixture
async def runtime(fast_settings: Settings, clock: ShiftedClock) -> AsyncIterator[Runtime]:
    runtime = Runtime(fast_settings, clock=clock)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


@pytest.fixture
async def channel(runtime: Runtime, api_key: str, fake: GraphApiFake) -> dict[str, Any]:
    return await connect_fake(runtime, WORKSPACE, fake)


@pytest.fixture
async def webhook(runtime: Runtime, channel: dict[str, Any]) -> AsyncIterator[WebhookClient]:
    app = create_app(runtime.settings, runtime=runtime)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://konvo.test"
    ) as http:
        yield WebhookClient(http, channel["_id"], app_secret="app-secret")


async def say(
    gql: GraphQLClient, phone: str, text: str | None = None, button: str | None = None, **more: Any
) -> None:
    await gql(SAY, p=phone, t=text, b=button, l=more.get("location"), f=more.get("form"))


async def field(gql: GraphQLClient, name: str, kind: str, options: list[str] | None = None) -> None:
    await gql(
        "mutation($n: String!, $o: [String!]) { createField(name: $n, type: "
        + kind
        + ", options: $o) { id } }",
        n=name,
        o=options,
    )


def sent_to(fake: GraphApiFake, phone: str) -> list[dict[str, Any]]:
    return [b for b in fake.sent() if b["to"] == phone.lstrip("+")]


async def wait_sent(fake: GraphApiFake, phone: str, count: int) -> list[dict[str, Any]]:
    async def probe() -> list[dict[str, Any]]:
        return sent_to(fake, phone)

    return await eventually(probe, lambda found: len(found) >= count)


async def variables(gql: GraphQLClient, phone: str) -> dict[str, Any]:
    return (await gql(VARIABLES, p=phone))["contact"]["variables"]


async def tags(gql: GraphQLClient, phone: str) -> list[str]:
    return (await gql(VARIABLES, p=phone))["contact"]["tags"]


async def settled_run(gql: GraphQLClient, run_id: str, status: str = "COMPLETED") -> dict[str, Any]:
    return await eventually(lambda: run_of(gql, run_id), lambda run: run["status"] == status)


def fresh(name: str, **message: Any) -> dict[str, Any]:
    """Fixture ``name`` as sent now, with its own wamid and ``message`` fields replaced."""
    body = payload(name)
    sent = message_of(body)
    sent.update(id=f"wamid.{new_id('t')}", timestamp=str(int(datetime.now(UTC).timestamp())), **message)
    return body


def tagging(*names: str) -> list[dict[str, Any]]:
    return [{"id": f"t_{name}", "type": "tag", "add": [name], "next": None} for name in names]


async def opened(gql: GraphQLClient, flow: dict[str, Any], phone: str) -> dict[str, Any]:
    """Publish ``flow``, let the customer write first (the window opens), start a run."""
    flow_id = await publish(gql, flow)
    await say(gql, phone, "hola")
    return await start_with(gql, flow_id, phone)


# --- lists ------------------------------------------------------------------------------------

CATEGORIES: dict[str, Any] = {
    "name": "Categorías",
    "start": "ask",
    "nodes": [
        {
            "id": "ask",
            "type": "message",
            "text": "¿Qué buscas?",
            "list_button": "Ver categorías",
            "buttons": [
                {"id": "shirts", "title": "Camisetas", "section": "Ropa", "next": "t_shirts"},
                {
                    "id": "trousers",
                    "title": "Pantalones",
                    "section": "Ropa",
                    "description": "Vaqueros y chinos",
                    "next": "t_trousers",
                },
                {"id": "sneakers", "title": "Zapatillas", "section": "Calzado", "next": "t_sneakers"},
                {"id": "boots", "title": "Botas de montaña", "section": "Calzado", "next": "t_boots"},
                {"id": "help", "title": "Hablar con alguien", "section": "Otros", "next": "t_help"},
            ],
        },
        *tagging("shirts", "trousers", "sneakers", "boots", "help"),
    ],
}


async def test_more_than_three_buttons_go_out_as_a_list_and_rows_are_picked_by_title_number_or_tap(
    gql: GraphQLClient, channel: dict[str, Any], fake: GraphApiFake
) -> None:
    flow_id = await publish(gql, CATEGORIES)
    picks = {
        "+34600700001": ("¡ZAPATILLAS!", None),
        "+34600700002": ("4", None),
        "+34600700003": (None, "help"),
    }
    runs = {}
    for phone in picks:
        await say(gql, phone, "hola")
        runs[phone] = (await start_with(gql, flow_id, phone))["id"]

    [body] = await wait_sent(fake, "+34600700001", 1)
    assert fake.rejected() == []
    interactive = body["interactive"]
    assert (body["type"], interactive["type"]) == ("interactive", "list")
    assert interactive["body"] == {"text": "¿Qué buscas?"}
    assert interactive["action"]["button"] == "Ver categorías"
    sections = interactive["action"]["sections"]
    assert [s["title"] for s in sections] == ["Ropa", "Calzado", "Otros"]
    assert [[r["id"] for r in s["rows"]] for s in sections] == [
        ["shirts", "trousers"],
        ["sneakers", "boots"],
        ["help"],
    ]
    assert sections[0]["rows"][1] == {
        "id": "trousers",
        "title": "Pantalones",
        "description": "Vaqueros y chinos",
    }

    for phone, (text, tap) in picks.items():
        await say(gql, phone, text, tap)
    expected = {
        "+34600700001": ("sneakers", "title"),
        "+34600700002": ("boots", "number"),
        "+34600700003": ("help", "tap"),
    }
    for phone, (row, matched_by) in expected.items():
        run = await settled_run(gql, runs[phone])
        [chosen] = [s for s in run["steps"] if s["action"] == "button"]
        assert (chosen["detail"]["button"], chosen["detail"]["matched_by"]) == (row, matched_by)
        assert await tags(gql, phone) == [row]


async def test_four_plain_buttons_become_a_list_labelled_in_the_workspace_language(
    gql: GraphQLClient, channel: dict[str, Any], fake: GraphApiFake
) -> None:
    """The help article: with more than 3 buttons WhatsApp shows a list (the workspace is es-ES)."""
    flow = {
        "name": "Cuatro",
        "start": "ask",
        "nodes": [
            {
                "id": "ask",
                "type": "message",
                "text": "Elige",
                "buttons": [{"id": f"o{i}", "title": f"Opción {i}", "next": None} for i in range(1, 5)],
            }
        ],
    }
    await opened(gql, flow, "+34600700004")
    [body] = await wait_sent(fake, "+34600700004", 1)
    assert fake.rejected() == []
    action = body["interactive"]["action"]
    assert body["interactive"]["type"] == "list" and action["button"] == "Ver opciones"
    assert action["sections"] == [{"rows": [{"id": f"o{i}", "title": f"Opción {i}"} for i in range(1, 5)]}]


# --- CTA URL ----------------------------------------------------------------------------------


async def test_a_link_message_goes_out_as_cta_url_with_its_media_header(
    gql: GraphQLClient, channel: dict[str, Any], fake: GraphApiFake
) -> None:
    flow = {
        "name": "Pedido",
        "start": "show",
        "nodes": [
            {
                "id": "show",
                "type": "message",
                "text": "Tu pedido {{trigger.order}} está en camino",
                "media": {"kind": "image", "url": "https://cdn.example/box.jpg"},
                "link": {"title": "Seguir pedido", "url": "https://shop.example/track/{{trigger.order}}"},
                "next": None,
            }
        ],
    }
    flow_id = await publish(gql, flow)
    await say(gql, "+34600700010", "hola")
    run = await start_with(gql, flow_id, "+34600700010", {"order": "A-1042"})
    [body] = await wait_sent(fake, "+34600700010", 1)
    assert fake.rejected() == []
    assert body["interactive"] == {
        "type": "cta_url",
        "body": {"text": "Tu pedido A-1042 está en camino"},
        "action": {
            "name": "cta_url",
            "parameters": {"display_text": "Seguir pedido", "url": "https://shop.example/track/A-1042"},
        },
        "header": {"type": "image", "image": {"link": "https://cdn.example/box.jpg"}},
    }
    assert (await settled_run(gql, run["id"]))["status"] == "COMPLETED"  # a link waits for nothing


# --- location requests ------------------------------------------------------------------------


async def test_a_location_request_is_answered_by_a_shared_location_into_typed_fields(
    gql: GraphQLClient, channel: dict[str, Any], fake: GraphApiFake, webhook: WebhookClient
) -> None:
    await field(gql, "lat", "NUMBER")
    await field(gql, "lng", "NUMBER")
    await field(gql, "delivery_address", "TEXT")
    await field(gql, "delivery_place", "TEXT")
    flow = {
        "name": "Entrega",
        "start": "where",
        "nodes": [
            {
                "id": "where",
                "type": "message",
                "text": "¿Dónde te lo enviamos?",
                "location_request": {
                    "save": {
                        "latitude": "lat",
                        "longitude": "lng",
                        "address": "delivery_address",
                        "name": "delivery_place",
                    },
                    "next": "thanks",
                },
            },
            {
                "id": "thanks",
                "type": "message",
                "text": "Enviamos a {{contact.delivery_address}}",
                "next": None,
            },
        ],
    }
    run = await opened(gql, flow, CUSTOMER)
    [body] = await wait_sent(fake, CUSTOMER, 1)
    assert body["interactive"] == {
        "type": "location_request_message",
        "body": {"text": "¿Dónde te lo enviamos?"},
        "action": {"name": "send_location"},
    }

    # A reaction does not answer the question; it is recorded and the run keeps waiting.
    assert (await webhook.post(fresh("reaction"))).status_code == 200
    waiting = await eventually(
        lambda: run_of(gql, run["id"]),
        lambda r: any(s["action"] == "reply_not_understood" for s in r["steps"]),
    )
    assert waiting["status"] == "WAITING"
    assert [s["detail"]["kind"] for s in waiting["steps"] if s["action"] == "reply_not_understood"] == [
        "reaction"
    ]

    assert (await webhook.post(fresh("location"))).status_code == 200
    done = await settled_run(gql, run["id"])
    [answer] = [s for s in done["steps"] if s["action"] == "location"]
    assert answer["node"] == "where" and answer["detail"]["location"]["name"] == "Tienda Centro"
    assert await variables(gql, CUSTOMER) == {
        "lat": 37.3922,
        "lng": -5.9946,
        "delivery_address": "Calle Sierpes 1, Sevilla",
        "delivery_place": "Tienda Centro",
    }
    bodies = await wait_sent(fake, CUSTOMER, 2)
    assert bodies[1]["text"]["body"] == "Enviamos a Calle Sierpes 1, Sevilla"
    assert fake.rejected() == []


# --- media carousels --------------------------------------------------------------------------


def card(name: str, **action: Any) -> dict[str, Any]:
    return {
        "media": {"kind": "image", "url": f"https://cdn.example/{name}.jpg"},
        "text": name.title(),
        **action,
    }


async def test_carousels_with_links_and_with_quick_replies_reach_meta_and_a_card_tap_takes_its_path(
    gql: GraphQLClient, channel: dict[str, Any], fake: GraphApiFake
) -> None:
    flow = {
        "name": "Novedades",
        "start": "links",
        "nodes": [
            {
                "id": "links",
                "type": "message",
                "text": "Lo nuevo de la semana",
                "carousel": [
                    card(name, link={"title": "Comprar", "url": f"https://shop.example/{name}"})
                    for name in ("camisa", "falda", "chaqueta")
                ],
                "next": "pick",
            },
            {
                "id": "pick",
                "type": "message",
                "text": "¿Cuál te llevas?",
                "carousel": [
                    card("camisa", buttons=[{"id": "shirt", "title": "Lo quiero", "next": "t_shirt"}]),
                    card("falda", buttons=[{"id": "skirt", "title": "Lo quiero", "next": "t_skirt"}]),
                ],
            },
            *tagging("shirt", "skirt"),
        ],
    }
    phone = "+34600700020"
    run = await opened(gql, flow, phone)
    links, replies = await wait_sent(fake, phone, 2)
    assert fake.rejected() == []
    cards = links["interactive"]["action"]["cards"]
    assert links["interactive"]["type"] == "carousel" and [c["card_index"] for c in cards] == [0, 1, 2]
    assert cards[1] == {
        "card_index": 1,
        "header": {"type": "image", "image": {"link": "https://cdn.example/falda.jpg"}},
        "body": {"text": "Falda"},
        "type": "cta_url",
        "action": {
            "name": "cta_url",
            "parameters": {"display_text": "Comprar", "url": "https://shop.example/falda"},
        },
    }
    assert [c["action"] for c in replies["interactive"]["action"]["cards"]] == [
        {"buttons": [{"type": "quick_reply", "quick_reply": {"id": "shirt", "title": "Lo quiero"}}]},
        {"buttons": [{"type": "quick_reply", "quick_reply": {"id": "skirt", "title": "Lo quiero"}}]},
    ]

    await say(gql, phone, "lo quiero")  # every card says it: it names none of them
    waiting = await run_of(gql, run["id"])
    assert waiting["status"] == "WAITING" and waiting["node"] == "pick"
    await say(gql, phone, None, "skirt")  # the second card's tap (WhatsApp's button_reply id)
    done = await settled_run(gql, run["id"])
    assert [s["detail"]["button"] for s in done["steps"] if s["action"] == "button"] == ["skirt"]
    assert await tags(gql, phone) == ["skirt"]


# --- WhatsApp Flows ---------------------------------------------------------------------------


async def signup_fields(gql: GraphQLClient) -> None:
    await field(gql, "email", "TEXT")
    await field(gql, "size", "FIXED", ["S", "M", "L"])
    await field(gql, "birthday", "DATE")
    await field(gql, "news", "BOOLEAN")


def signup_flow(name: str, **options: Any) -> dict[str, Any]:
    return {
        "name": name,
        "start": "signup",
        "nodes": [
            {
                "id": "signup",
                "type": "whatsapp_flow",
                "text": "Completa tus datos y te guardamos la talla",
                "flow_id": "1187391629463213",
                "screen": "DATOS",
                "cta": "Rellenar datos",
                "data": {"telefono": "{{contact.phone}}"},
                "fields": {
                    "email": "email",
                    "talla": "size",
                    "nacimiento": "birthday",
                    "acepta_novedades": "news",
                },
                "next": "thanks",
                **options,
            },
            {"id": "thanks", "type": "message", "text": "Gracias, talla {{contact.size}}", "next": None},
            {"id": "human", "type": "message", "text": "Te paso con una persona", "next": None},
            {"id": "cold", "type": "tag", "add": ["form-cold"], "next": None},
        ],
    }


def form_answer(token: str, **fields: Any) -> dict[str, Any]:
    """The nfm_reply fixture answering the form sent with ``token``, its fields replaced by ``fields``."""
    body = payload("interactive_nfm_reply")
    reply = message_of(body)["interactive"]["nfm_reply"]
    answer = {**json.loads(reply["response_json"]), **fields, "flow_token": token}
    reply["response_json"] = json.dumps(answer, ensure_ascii=False)
    message_of(body).update(id=f"wamid.{new_id('t')}", timestamp=str(int(datetime.now(UTC).timestamp())))
    return body


async def test_a_whatsapp_flow_answer_fills_typed_contact_fields(
    gql: GraphQLClient, channel: dict[str, Any], fake: GraphApiFake, webhook: WebhookClient
) -> None:
    await signup_fields(gql)
    run = await opened(gql, signup_flow("Alta"), CUSTOMER)
    assert run["status"] == "WAITING"
    [sent] = await wait_sent(fake, CUSTOMER, 1)
    assert fake.rejected() == []
    token = f"konvo:{run['id']}:signup"
    assert sent["interactive"] == {
        "type": "flow",
        "body": {"text": "Completa tus datos y te guardamos la talla"},
        "action": {
            "name": "flow",
            "parameters": {
                "flow_message_version": "3",
                "flow_id": "1187391629463213",
                "flow_cta": "Rellenar datos",
                "flow_action": "navigate",
                "flow_action_payload": {"screen": "DATOS", "data": {"telefono": CUSTOMER}},
                "flow_token": token,
            },
        },
    }

    assert (await webhook.post(form_answer(token))).status_code == 200
    done = await settled_run(gql, run["id"])
    [saved] = [s for s in done["steps"] if s["action"] == "form_saved"]
    assert saved["node"] == "signup" and saved["detail"]["answer"]["email"] == "sheena@example.com"
    found = await variables(gql, CUSTOMER)
    assert {k: found[k] for k in ("email", "size", "news")} == {
        "email": "sheena@example.com",
        "size": "M",
        "news": True,
    }
    # A date alone is midnight in the workspace's time zone (Europe/Madrid, UTC+2 in May).
    assert datetime.fromisoformat(found["birthday"]) == datetime(1990, 5, 23, 22, 0, tzinfo=UTC)
    bodies = await wait_sent(fake, CUSTOMER, 2)
    assert bodies[1]["text"]["body"] == "Gracias, talla M"

    conversation = await gql(
        "query($p: String!) { conversation(phone: $p) { messages { kind text flowResponse } } }", p=CUSTOMER
    )
    [answer] = [m for m in conversation["conversation"]["messages"] if m["kind"] == "nfm_reply"]
    assert answer["flowResponse"]["talla"] == "M" and "flow_token" not in answer["flowResponse"]
    assert answer["text"].startswith("sent the form: email: sheena@example.com")


async def test_a_whatsapp_flow_answer_that_does_not_fit_is_asked_again_then_takes_on_invalid(
    gql: GraphQLClient, channel: dict[str, Any], fake: GraphApiFake, webhook: WebhookClient
) -> None:
    await signup_fields(gql)
    run = await opened(gql, signup_flow("Alta estricta", retries=1, on_invalid="human"), CUSTOMER)
    token = f"konvo:{run['id']}:signup"
    await wait_sent(fake, CUSTOMER, 1)

    assert (await webhook.post(form_answer(token, talla="XXL"))).status_code == 200
    again = await wait_sent(fake, CUSTOMER, 2)  # the form goes out again, with the sizes
    assert again[1]["interactive"]["type"] == "flow"
    assert (
        again[1]["interactive"]["body"]["text"] == "Completa tus datos y te guardamos la talla\n\nS / M / L"
    )
    waiting = await run_of(gql, run["id"])
    assert (waiting["status"], waiting["node"]) == ("WAITING", "signup")
    [rejected] = [s for s in waiting["steps"] if s["action"] == "form_not_saved"]
    assert rejected["outcome"] == "INVALID_VALUE" and rejected["detail"]["attempt"] == 1
    assert rejected["detail"]["problems"][0]["field"] == "size" and "'XXL'" in rejected["detail"]["why"]
    assert await variables(gql, CUSTOMER) == {}  # nothing of an answer that does not fit is stored

    assert (await webhook.post(form_answer(token, nacimiento="el año pasado"))).status_code == 200
    done = await settled_run(gql, run["id"])
    assert [s["node"] for s in done["steps"] if s["action"] == "message_sent"][-1] == "human"
    assert await variables(gql, CUSTOMER) == {}
    assert (await wait_sent(fake, CUSTOMER, 3))[2]["text"]["body"] == "Te paso con una persona"
    assert fake.rejected() == []


async def test_a_whatsapp_flow_without_an_answer_takes_no_reply_and_a_sandbox_answer_fills_fields(
    gql: GraphQLClient, runtime: Runtime, clock: ShiftedClock
) -> None:
    """The sandbox channel (no WhatsApp number): the same node, answered with sandboxInbound."""
    await signup_fields(gql)
    flow_id = await publish(gql, signup_flow("Alta sandbox", no_reply={"after": "2h", "next": "cold"}))
    silent, answering = "+34600700030", "+34600700031"
    for phone in (silent, answering):
        await say(gql, phone, "hola")
    quiet = await start_with(gql, flow_id, silent)
    answered = await start_with(gql, flow_id, answering)

    await say(gql, answering, form={"email": "ana@example.com", "talla": "l", "acepta_novedades": "sí"})
    assert (await settled_run(gql, answered["id"]))["status"] == "COMPLETED"
    assert await variables(gql, answering) == {"email": "ana@example.com", "size": "L", "news": True}

    clock.advance(timedelta(hours=2, minutes=1))
    done = await settled_run(gql, quiet["id"])
    assert [s["action"] for s in done["steps"] if s["action"] in ("no_reply", "tagged")] == [
        "no_reply",
        "tagged",
    ]
    assert await tags(gql, silent) == ["form-cold"]
    assert await variables(gql, silent) == {}


# --- what the customer sends: quotes, reactions and the rest, in the inbox -------------------

INBOX = """query($p: String!) { conversation(phone: $p) { messages {
  id direction kind text customerReaction quotedId
  quoted { id direction text }
  reaction { emoji messageId message { id text } }
  location { latitude longitude name address }
  contacts rendered { text header { kind } } } } }"""


async def test_a_quoted_reply_is_linked_and_a_reaction_is_stored_and_shown_in_the_inbox(
    gql: GraphQLClient, runtime: Runtime, channel: dict[str, Any], fake: GraphApiFake, webhook: WebhookClient
) -> None:
    flow = {
        "name": "Aviso",
        "start": "notice",
        "nodes": [{"id": "notice", "type": "message", "text": "Tu pedido sale hoy", "next": None}],
    }
    await opened(gql, flow, CUSTOMER)

    async def sent_record() -> list[dict[str, Any]]:
        found = await runtime.messages.conversation(await key_of(runtime, WORKSPACE, CUSTOMER), 20)
        return [m for m in found if m.get("direction") == "out" and m.get("provider_id")]

    [ours] = await eventually(sent_record, lambda found: len(found) == 1)
    wamid = ours["provider_id"]
    quoting = fresh("text_quoting", context={"from": "15550783881", "id": wamid})
    reacting = fresh("reaction", reaction={"message_id": wamid, "emoji": "❤️"})
    for body in (quoting, reacting, fresh("sticker"), fresh("contacts"), fresh("unsupported")):
        assert (await webhook.post(body)).status_code == 200

    async def messages() -> list[dict[str, Any]]:
        return (await gql(INBOX, p=CUSTOMER))["conversation"]["messages"]

    shown = await eventually(messages, lambda found: len(found) == 7)
    by_kind = {m["kind"]: m for m in shown}
    out = next(m for m in shown if m["direction"] == "OUT")
    assert out["id"] == ours["_id"] and out["customerReaction"] == "❤️"

    reply = next(m for m in shown if m["text"] == "¿Y este llega antes del viernes?")
    assert reply["quotedId"] == wamid
    assert reply["quoted"] == {"id": ours["_id"], "direction": "OUT", "text": "Tu pedido sale hoy"}

    reaction = by_kind["reaction"]
    assert reaction["reaction"]["emoji"] == "❤️" and reaction["reaction"]["messageId"] == wamid
    assert reaction["reaction"]["message"] == {"id": ours["_id"], "text": "Tu pedido sale hoy"}
    assert reaction["rendered"]["text"] == "reacted ❤️"

    assert by_kind["sticker"]["rendered"]["header"]["kind"] == "STICKER"
    assert by_kind["contacts"]["contacts"][0]["name"]["formatted_name"] == "Lucía Pérez"
    assert by_kind["contacts"]["text"].startswith("shared Lucía Pérez")
    assert by_kind["unsupported"]["text"].startswith("sent a message WhatsApp does not pass on")


async def test_another_workspace_cannot_see_a_quoted_message_it_does_not_own(
    gql: GraphQLClient, runtime: Runtime
) -> None:
    """A quote names a provider id any tenant could send; it resolves within the workspace only."""
    from tests.integration.conftest import client_for, make_workspace

    other_key = await make_workspace(runtime, "ws_other")
    other = client_for(runtime, other_key)
    try:
        await say(gql, "+34600700040", "mensaje privado")
        [mine] = (await gql(INBOX, p="+34600700040"))["conversation"]["messages"]
        await other(
            "mutation($p: String!, $t: String, $r: ID) { sandboxInbound(phone: $p, text: $t, replyTo: $r) }",
            p="+34600700040",
            t="¿y esto?",
            r=mine["id"],
        )
        [quoting] = (await other(INBOX, p="+34600700040"))["conversation"]["messages"]
        assert quoting["quotedId"] == mine["id"] and quoting["quoted"] is None
    finally:
        await other.http.aclose()


# --- the sandbox shows each kind (konvo chat prints rendered.text) ------------------------------

OUTBOX = """query($p: String!) { sandboxOutbox(phone: $p) { kind rendered {
  text listButton asList buttons { kind title number section description url }
  cards { header { kind url } body buttons { kind title id number } } } } }"""


async def test_the_sandbox_shows_lists_links_location_requests_carousels_and_forms(
    gql: GraphQLClient,
) -> None:
    categories = CATEGORIES["nodes"][0]
    flow = {
        "name": "Escaparate",
        "start": "list",
        "nodes": [
            {
                **categories,
                "id": "list",
                "buttons": [{**b, "next": None} for b in categories["buttons"]],
                "next": "link",
            },
            {
                "id": "link",
                "type": "message",
                "text": "Tu pedido",
                "link": {"title": "Seguir pedido", "url": "https://shop.example/t/1"},
                "next": "where",
            },
            {
                "id": "where",
                "type": "message",
                "text": "¿Dónde estás?",
                "location_request": {"next": "cards"},
            },
            {
                "id": "cards",
                "type": "message",
                "text": "Novedades",
                "carousel": [
                    card("camisa", buttons=[{"id": "shirt", "title": "Lo quiero"}]),
                    card("falda", buttons=[{"id": "skirt", "title": "Lo quiero"}]),
                ],
                "next": "form",
            },
            {
                "id": "form",
                "type": "whatsapp_flow",
                "text": "Tus datos",
                "flow_id": "1187391629463213",
                "screen": "DATOS",
                "cta": "Rellenar",
                "fields": {},
                "next": None,
            },
        ],
    }
    phone = "+34600700050"
    run = await opened(gql, flow, phone)
    assert run["status"] == "WAITING"  # at the location request: it waits for the pin
    await say(gql, phone, location={"latitude": 40.4168, "longitude": -3.7038, "name": "Sol"})
    shown = (await gql(OUTBOX, p=phone))["sandboxOutbox"]
    assert [m["kind"] for m in shown] == ["list", "cta_url", "location_request", "carousel", "flow"]
    listing, link, where, cards, form = (m["rendered"] for m in shown)
    assert listing["text"] == "\n".join(
        [
            "¿Qué buscas?",
            "[Ver categorías]",
            "*Ropa*",
            "1. Camisetas",
            "2. Pantalones — Vaqueros y chinos",
            "*Calzado*",
            "3. Zapatillas",
            "4. Botas de montaña",
            "*Otros*",
            "5. Hablar con alguien",
        ]
    )
    assert listing["asList"] and listing["listButton"] == "Ver categorías"
    assert (
        listing["buttons"][1]["section"] == "Ropa"
        and listing["buttons"][1]["description"] == "Vaqueros y chinos"
    )
    assert link["text"] == "Tu pedido\n[link] Seguir pedido: https://shop.example/t/1"
    assert where["text"] == "¿Dónde estás?\n[location] Send location"
    assert where["buttons"] == [
        {
            "kind": "LOCATION_REQUEST",
            "title": "Send location",
            "number": None,
            "section": None,
            "description": None,
            "url": None,
        }
    ]
    assert cards["text"] == "\n".join(
        [
            "Novedades",
            "Card 1: [image] https://cdn.example/camisa.jpg",
            "  Camisa",
            "  [1] Lo quiero",
            "Card 2: [image] https://cdn.example/falda.jpg",
            "  Falda",
            "  [2] Lo quiero",
        ]
    )
    assert [b["id"] for c in cards["cards"] for b in c["buttons"]] == ["shirt", "skirt"]
    assert form["text"] == "Tus datos\n[form] Rellenar"


async def test_konvo_chat_numbers_list_rows_shares_a_location_and_shows_what_the_customer_sent(
    gql: GraphQLClient, runtime: Runtime, api_key: str
) -> None:
    """``konvo chat``'s own code on the in-process app (the terminal itself is tests/e2e)."""
    import io

    from server.dev.chat import Chat

    await field(gql, "lat", "NUMBER")
    flow = {
        "name": "Chat",
        "start": "pick",
        "nodes": [
            {
                **CATEGORIES["nodes"][0],
                "id": "pick",
                "buttons": [{**b, "next": "where"} for b in CATEGORIES["nodes"][0]["buttons"]],
            },
            {
                "id": "where",
                "type": "message",
                "text": "¿Dónde estás?",
                "location_request": {"save": {"latitude": "lat"}, "next": "done"},
            },
            {"id": "done", "type": "message", "text": "¡Gracias!", "next": None},
        ],
    }
    phone = "+34600700060"
    await opened(gql, flow, phone)
    screen = io.StringIO()
    chat = Chat("http://konvo.test", api_key, phone, out=screen)
    await chat.http.aclose()
    app = create_app(runtime.settings, runtime=runtime)
    chat.http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://konvo.test",
        headers={"Authorization": f"Bearer {api_key}"},
    )
    try:
        await chat.show_history()
        await chat.send("4")  # the fourth row of the list, pressed as a tap
        await chat.send("/location 40.4168,-3.7038 Puerta del Sol")
        chat.seen.clear()
        await chat.show_history()
    finally:
        await chat.http.aclose()
    lines = screen.getvalue().splitlines()
    assert "  4. Botas de montaña" in lines and "you pressed: Botas de montaña" in lines
    assert "you: shared a location: Puerta del Sol (40.4168, -3.7038)" in lines
    assert lines[-1] == "bot: ¡Gracias!"
    assert (await variables(gql, phone)) == {"lat": 40.4168}


async def test_the_sandbox_customer_reacts_and_quotes_like_on_whatsapp(gql: GraphQLClient) -> None:
    flow = {
        "name": "Aviso sandbox",
        "start": "notice",
        "nodes": [{"id": "notice", "type": "message", "text": "Tu pedido sale hoy", "next": None}],
    }
    phone = "+34600700070"
    await opened(gql, flow, phone)
    [_, ours] = (await gql(INBOX, p=phone))["conversation"]["messages"]
    react = """mutation($p: String!, $r: ReactionInput, $q: ID, $t: String) {
      sandboxInbound(phone: $p, reaction: $r, replyTo: $q, text: $t) }"""
    await gql(react, p=phone, r={"messageId": ours["id"], "emoji": "👍"}, q=None, t=None)
    await gql(react, p=phone, r={"messageId": ours["id"], "emoji": "🎉"}, q=None, t=None)  # replaces it
    await gql(react, p=phone, r=None, q=ours["id"], t="¿A qué hora?")
    shown = (await gql(INBOX, p=phone))["conversation"]["messages"]
    assert [m["customerReaction"] for m in shown if m["direction"] == "OUT"] == ["🎉"]
    assert [m["rendered"]["text"] for m in shown if m["kind"] == "reaction"] == ["reacted 👍", "reacted 🎉"]
    assert shown[-1]["quoted"] == {"id": ours["id"], "direction": "OUT", "text": "Tu pedido sale hoy"}

    await gql(react, p=phone, r={"messageId": ours["id"], "emoji": ""}, q=None, t=None)  # removed
    shown = (await gql(INBOX, p=phone))["conversation"]["messages"]
    assert [m["customerReaction"] for m in shown if m["direction"] == "OUT"] == [None]
    assert shown[-1]["rendered"]["text"] == "removed a reaction"
    with pytest.raises(GraphQLErrors) as refused:
        await gql(react, p=phone, r={"messageId": ours["id"], "emoji": "👍"}, q=None, t="y esto")
    assert refused.value.codes == ["INVALID_INPUT"]
