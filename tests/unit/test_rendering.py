"""What the customer sees for an outbound message: templates filled in from their components."""

from __future__ import annotations

from typing import Any

from server.machines.rendering import plain_text, render_message

PROMO: dict[str, Any] = {
    "name": "promo",
    "language": "es",
    "components": [
        {"type": "HEADER", "format": "IMAGE"},
        {"type": "BODY", "text": "Hola {{1}}, tu descuento: {{2}}"},
        {"type": "FOOTER", "text": "Válido hasta el domingo"},
        {
            "type": "BUTTONS",
            "buttons": [
                {"type": "QUICK_REPLY", "text": "Lo quiero"},
                {"type": "QUICK_REPLY", "text": "No, gracias"},
                {"type": "URL", "text": "Ver oferta", "url": "https://shop.example/p/{{1}}"},
                {"type": "PHONE_NUMBER", "text": "Llamar", "phone_number": "+34910000000"},
                {"type": "COPY_CODE"},
            ],
        },
    ],
}
TEMPLATES = {("promo", "es"): PROMO, ("promo", ""): PROMO}


def promo_message(params: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "template",
        "template": {"name": "promo", "language": "es", "params": params},
        "buttons": [{"id": "want", "title": "want"}, {"id": "nope", "title": "nope"}],
    }


def test_a_template_shows_header_body_footer_and_every_button() -> None:
    params = {
        "header": ["https://img.example/promo.png"],
        "body": ["Ana", "10 %"],
        "buttons": ["abc", "HOLA10"],
    }
    assert render_message(promo_message(params), TEMPLATES) == {
        "header": {"kind": "IMAGE", "url": "https://img.example/promo.png"},
        "body": "Hola Ana, tu descuento: 10 %",
        "footer": "Válido hasta el domingo",
        "buttons": [
            {"kind": "QUICK_REPLY", "title": "Lo quiero", "id": "want", "number": 1},
            {"kind": "QUICK_REPLY", "title": "No, gracias", "id": "nope", "number": 2},
            {"kind": "URL", "title": "Ver oferta", "url": "https://shop.example/p/abc"},
            {"kind": "CALL", "title": "Llamar", "phone_number": "+34910000000"},
            {"kind": "COPY_CODE", "title": "Copiar código", "code": "HOLA10"},
        ],
        "as_list": True,
    }


def test_a_list_of_more_than_three_buttons_is_numbered() -> None:
    params = {
        "header": "https://img.example/promo.png",
        "body": ["Ana", "10 %"],
        "buttons": ["abc", "HOLA10"],
    }
    assert plain_text(render_message(promo_message(params), TEMPLATES)) == "\n".join(
        [
            "[image] https://img.example/promo.png",
            "Hola Ana, tu descuento: 10 %",
            "_Válido hasta el domingo_",
            "See all options:",
            "1. Lo quiero",
            "2. No, gracias",
            "- Ver oferta: https://shop.example/p/abc (link)",
            "- Llamar: +34910000000 (call)",
            "- Copiar código: HOLA10 (copy)",
        ]
    )


def test_up_to_three_buttons_show_as_buttons_with_their_titles() -> None:
    reminder = {
        "components": [
            {"type": "HEADER", "format": "TEXT", "text": "Hola {{1}}"},
            {"type": "BODY", "text": "Te dejaste algo: {{1}}"},
            {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Comprar ahora"}]},
        ]
    }
    message = {
        "kind": "template",
        "template": {"name": "r", "language": "es", "params": {"header": "Ana", "body": ["zapatos"]}},
        "buttons": [{"id": "buy", "title": "buy"}],
    }
    rendered = render_message(message, {("r", "es"): reminder})
    assert plain_text(rendered) == "*Hola Ana*\nTe dejaste algo: zapatos\n[1] Comprar ahora"
    assert rendered["buttons"] == [
        {"kind": "QUICK_REPLY", "title": "Comprar ahora", "id": "buy", "number": 1}
    ]


def test_a_quick_reply_without_a_node_button_answers_with_its_text_as_whatsapp_does() -> None:
    message = {
        "kind": "template",
        "template": {"name": "promo", "language": "es", "params": {}},
        "buttons": [],
    }
    buttons = render_message(message, TEMPLATES)["buttons"]
    assert buttons[0] == {"kind": "QUICK_REPLY", "title": "Lo quiero", "id": "Lo quiero", "number": 1}


def test_a_missing_parameter_stays_visible() -> None:
    """Rendering never fails: a parameter the params do not give shows as ``{{n}}`` (validation at
    publish refuses such a node; a message queued before an edit of the template may still lack one)."""
    template = {"components": [{"type": "BODY", "text": "Hola {{1}}, pedido {{2}}"}]}
    message = {"kind": "template", "template": {"name": "n", "language": "es", "params": {"body": ["Ana"]}}}
    assert render_message(message, {("n", ""): template})["body"] == "Hola Ana, pedido {{2}}"


def test_a_template_not_in_the_workspace_shows_what_is_known() -> None:
    message = {
        "kind": "template",
        "template": {"name": "gone", "language": "es", "params": {"body": ["Ana", "A-1"]}},
        "buttons": [{"id": "yes", "title": "yes"}],
    }
    assert render_message(message, {}) == {
        "body": "[template gone (es) not found] Ana · A-1",
        "buttons": [{"kind": "QUICK_REPLY", "title": "yes", "id": "yes", "number": 1}],
    }


def test_messages_with_text_media_and_buttons() -> None:
    assert render_message({"kind": "text", "text": "Hola"}) == {"body": "Hola"}
    media = {
        "kind": "media",
        "media": {"kind": "document", "url": "https://x.example/f.pdf", "caption": "Tu factura"},
    }
    assert render_message(media) == {
        "header": {"kind": "DOCUMENT", "url": "https://x.example/f.pdf"},
        "body": "Tu factura",
    }
    buttons = {
        "kind": "buttons",
        "text": "¿Seguimos?",
        "buttons": [{"id": "y", "title": "Sí"}, {"id": "n", "title": "No"}],
    }
    assert plain_text(render_message(buttons)) == "¿Seguimos?\n[1] Sí\n[2] No"
