"""The sandbox outbox and the inbox show template messages as WhatsApp would (issue 14, item 8):
header, body with its parameters, footer, and every button with its title and kind."""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import publish
from tests.support.graphql import GraphQLClient

RENDERED = "rendered { header { kind text url } body footer asList text buttons { kind title id number url phoneNumber code } }"
OUTBOX = (
    f"query($p: String!) {{ sandboxOutbox(phone: $p) {{ kind text buttons {{ id title }} {RENDERED} }} }}"
)
INBOX = f"query($p: String!) {{ conversation(phone: $p) {{ messages {{ direction text {RENDERED} }} }} }}"
TEMPLATE = "mutation($i: TemplateInput!) { createTemplate(input: $i) { id } }"
START = "mutation($f: ID!, $p: String!, $v: JSON) { startFlow(flowId: $f, phone: $p, variables: $v) { id } }"

OFFER = {
    "name": "weekly_offer",
    "language": "es",
    "category": "UTILITY",
    "components": [
        {"type": "HEADER", "format": "TEXT", "text": "Oferta para {{1}}"},
        {"type": "BODY", "text": "Hola {{1}}, tu pedido {{2}} tiene un regalo."},
        {"type": "FOOTER", "text": "Demo shop"},
        {
            "type": "BUTTONS",
            "buttons": [
                {"type": "QUICK_REPLY", "text": "Lo quiero"},
                {"type": "QUICK_REPLY", "text": "No, gracias"},
                {"type": "URL", "text": "Ver pedido", "url": "https://shop.example/o/{{1}}"},
                {"type": "PHONE_NUMBER", "text": "Llamar", "phone_number": "+34910000000"},
                {"type": "COPY_CODE"},
            ],
        },
    ],
}
REMINDER = {
    "name": "short_reminder",
    "language": "es",
    "category": "UTILITY",
    "components": [
        {"type": "HEADER", "format": "IMAGE"},
        {"type": "BODY", "text": "¿Sigues interesado en {{1}}?"},
        {
            "type": "BUTTONS",
            "buttons": [{"type": "QUICK_REPLY", "text": "Sí"}, {"type": "QUICK_REPLY", "text": "No"}],
        },
    ],
}


def template_flow(name: str, node: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "start": "send",
        "nodes": [
            {"id": "send", "type": "template", "language": "es", **node},
            {"id": "done", "type": "tag", "add": ["done"]},
        ],
    }


async def test_a_template_with_every_kind_of_button_renders_in_the_outbox_and_the_inbox(
    gql: GraphQLClient,
) -> None:
    await gql(TEMPLATE, i=OFFER)
    await gql('mutation { createField(name: "first_name", type: TEXT) { id } }')
    flow_id = await publish(
        gql,
        template_flow(
            "Offer",
            {
                "template": "weekly_offer",
                "params": {
                    "header": ["{{contact.first_name}}"],
                    "body": ["{{contact.first_name}}", "{{trigger.order}}"],
                    "buttons": ["{{trigger.order}}", "REGALO5"],
                },
                "buttons": [{"id": "want", "next": "done"}, {"id": "nope", "next": None}],
            },
        ),
    )
    phone = "+34600777001"
    await gql(
        'mutation($p: String!) { setVariable(phone: $p, field: "first_name", value: "Ana") { id } }', p=phone
    )
    await gql(START, f=flow_id, p=phone, v={"order": "A-17"})

    [sent] = (await gql(OUTBOX, p=phone))["sandboxOutbox"]
    assert sent["kind"] == "template"
    assert sent["text"] == "Hola Ana, tu pedido A-17 tiene un regalo."  # was null
    assert sent["buttons"] == [{"id": "want", "title": "Lo quiero"}, {"id": "nope", "title": "No, gracias"}]
    rendered = sent["rendered"]
    assert rendered["header"] == {"kind": "TEXT", "text": "Oferta para Ana", "url": None}
    assert (rendered["body"], rendered["footer"], rendered["asList"]) == (
        "Hola Ana, tu pedido A-17 tiene un regalo.",
        "Demo shop",
        True,
    )
    assert rendered["buttons"] == [
        {
            "kind": "QUICK_REPLY",
            "title": "Lo quiero",
            "id": "want",
            "number": 1,
            "url": None,
            "phoneNumber": None,
            "code": None,
        },
        {
            "kind": "QUICK_REPLY",
            "title": "No, gracias",
            "id": "nope",
            "number": 2,
            "url": None,
            "phoneNumber": None,
            "code": None,
        },
        {
            "kind": "URL",
            "title": "Ver pedido",
            "id": None,
            "number": None,
            "url": "https://shop.example/o/A-17",
            "phoneNumber": None,
            "code": None,
        },
        {
            "kind": "CALL",
            "title": "Llamar",
            "id": None,
            "number": None,
            "url": None,
            "phoneNumber": "+34910000000",
            "code": None,
        },
        {
            "kind": "COPY_CODE",
            "title": "Copiar código",
            "id": None,
            "number": None,
            "url": None,
            "phoneNumber": None,
            "code": "REGALO5",
        },
    ]
    assert rendered["text"].splitlines() == [
        "*Oferta para Ana*",
        "Hola Ana, tu pedido A-17 tiene un regalo.",
        "_Demo shop_",
        "See all options:",
        "1. Lo quiero",
        "2. No, gracias",
        "- Ver pedido: https://shop.example/o/A-17 (link)",
        "- Llamar: +34910000000 (call)",
        "- Copiar código: REGALO5 (copy)",
    ]
    [in_inbox] = (await gql(INBOX, p=phone))["conversation"]["messages"]
    assert in_inbox["direction"] == "OUT"
    assert in_inbox["text"] == sent["text"]
    assert in_inbox["rendered"] == rendered


async def test_up_to_three_buttons_show_as_buttons_and_a_media_header_shows_its_url(
    gql: GraphQLClient,
) -> None:
    await gql(TEMPLATE, i=REMINDER)
    flow_id = await publish(
        gql,
        template_flow(
            "Reminder",
            {
                "template": "short_reminder",
                "params": {"header": "https://img.example/shoes.png", "body": ["{{trigger.item}}"]},
                "buttons": [{"id": "yes", "next": "done"}, {"id": "no", "next": None}],
            },
        ),
    )
    phone = "+34600777002"
    await gql(START, f=flow_id, p=phone, v={"item": "las zapatillas"})
    [sent] = (await gql(OUTBOX, p=phone))["sandboxOutbox"]
    assert sent["buttons"] == [{"id": "yes", "title": "Sí"}, {"id": "no", "title": "No"}]  # were the ids
    assert sent["rendered"]["header"] == {
        "kind": "IMAGE",
        "text": None,
        "url": "https://img.example/shoes.png",
    }
    assert sent["rendered"]["asList"] is False
    assert sent["rendered"]["text"] == (
        "[image] https://img.example/shoes.png\n¿Sigues interesado en las zapatillas?\n[1] Sí\n[2] No"
    )
    # The inbox shows the customer's tap too.
    await gql('mutation($p: String!) { sandboxInbound(phone: $p, text: "Sí", buttonId: "yes") }', p=phone)
    messages = (await gql(INBOX, p=phone))["conversation"]["messages"]
    assert [(m["direction"], m["rendered"]["text"]) for m in messages][-1] == ("IN", "Sí")
    tags = (await gql("query($p: String!) { contact(phone: $p) { tags } }", p=phone))["contact"]["tags"]
    assert tags == ["done"]


async def test_simple_messages_render_too(gql: GraphQLClient) -> None:
    flow_id = await publish(
        gql,
        {
            "name": "Simple",
            "start": "ask",
            "nodes": [
                {
                    "id": "ask",
                    "type": "message",
                    "text": "¿Te ayudamos?",
                    "media": {"kind": "image", "url": "https://img.example/a.png"},
                    "buttons": [{"id": "y", "title": "Sí", "next": None}],
                }
            ],
        },
    )
    phone = "+34600777003"
    await gql('mutation($p: String!) { sandboxInbound(phone: $p, text: "hola") }', p=phone)
    await gql(START, f=flow_id, p=phone)
    [sent] = (await gql(OUTBOX, p=phone))["sandboxOutbox"]
    assert sent["rendered"]["text"] == "[image] https://img.example/a.png\n¿Te ayudamos?\n[1] Sí"
