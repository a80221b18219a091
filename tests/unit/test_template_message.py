"""``resolve_template``: what the customer sees, shared by the validator, the payload builder and the sandbox."""

from __future__ import annotations

from typing import Any

import pytest

from server.channels.whatsapp.payloads import PayloadError, build
from server.channels.whatsapp.template_message import ResolvedButton, resolve_template

COMPONENTS: list[dict[str, Any]] = [
    {"type": "HEADER", "format": "TEXT", "text": "Pedido {{1}}"},
    {"type": "BODY", "text": "Hola {{1}}, tu pedido {{2}} está en camino."},
    {"type": "FOOTER", "text": "Tienda Ejemplo"},
    {
        "type": "BUTTONS",
        "buttons": [
            {"type": "QUICK_REPLY", "text": "Gracias"},
            {"type": "URL", "text": "Ver pedido", "url": "https://shop.example/o/{{1}}"},
            {"type": "COPY_CODE", "example": "SAVE10"},
            {"type": "PHONE_NUMBER", "text": "Llamar", "phone_number": "+34910000000"},
            {"type": "QUICK_REPLY", "text": "Ayuda"},
        ],
    },
]
PARAMS = {
    "header": "A-17",
    "body": ["Ana", "A-17"],
    "buttons": [{"index": 1, "url": "A-17"}, {"index": 2, "coupon_code": "SAVE10"}],
}


def test_everything_the_customer_sees_is_filled_in() -> None:
    resolved = resolve_template(COMPONENTS, PARAMS, ["thanks"])
    assert resolved.ok, resolved.problems
    assert resolved.header is not None and resolved.header.text == "Pedido A-17"
    assert resolved.body == "Hola Ana, tu pedido A-17 está en camino."
    assert resolved.footer == "Tienda Ejemplo"
    assert resolved.buttons == (
        ResolvedButton(0, "QUICK_REPLY", "Gracias", payload="thanks", node_button="thanks"),
        ResolvedButton(1, "URL", "Ver pedido", url="https://shop.example/o/A-17", suffix="A-17"),
        ResolvedButton(2, "COPY_CODE", None, coupon_code="SAVE10"),
        ResolvedButton(3, "PHONE_NUMBER", "Llamar", phone_number="+34910000000"),
        ResolvedButton(4, "QUICK_REPLY", "Ayuda"),  # no node button: WhatsApp sends its text back
    )


def test_bare_values_fill_dynamic_buttons_in_order_and_a_payload_the_free_quick_reply() -> None:
    params = {**PARAMS, "buttons": ["A-17", "SAVE10", {"payload": "help"}]}
    resolved = resolve_template(COMPONENTS, params, ["thanks"])
    assert resolved.ok, resolved.problems
    assert [(b.suffix, b.coupon_code, b.payload) for b in resolved.buttons] == [
        (None, None, "thanks"),
        ("A-17", None, None),
        (None, "SAVE10", None),
        (None, None, None),
        (None, None, "help"),
    ]


def test_a_message_with_problems_still_renders_what_it_can() -> None:
    resolved = resolve_template(COMPONENTS, {"body": ["Ana"]}, [])
    assert resolved.body == "Hola Ana, tu pedido {{2}} está en camino."
    assert len(resolved.problems) == 4  # header, body count, URL suffix, copy code


def test_placeholders_are_only_known_at_run_time() -> None:
    params = {**PARAMS, "body": ["{{contact.first_name}}", "{{trigger.order_id}}"], "header": "{{trigger.x}}"}
    assert resolve_template(COMPONENTS, params, placeholders=True).ok
    assert resolve_template(COMPONENTS, {**PARAMS, "body": ["", "x"]}, placeholders=True).problems == (
        "body parameter {{1}} is empty; WhatsApp refuses empty template parameters",
    )


@pytest.mark.parametrize(
    "buttons",
    [{"1": "A-17"}, [{"index": 1, "url": "A-17", "payload": "x"}]],
    ids=["keyed by index", "two parameters"],
)
def test_a_queued_message_of_the_wrong_shape_is_refused_not_stringified(buttons: Any) -> None:
    """An outbox message queued before params were typed: refused with the reason, never str(dict)."""
    message = {
        "kind": "template",
        "to": "+34600000000",
        "template": {"name": "order_update", "language": "es", "params": {**PARAMS, "buttons": buttons}},
    }
    template = {"name": "order_update", "language": "es", "components": COMPONENTS}
    with pytest.raises(PayloadError) as refused:
        build(message, template)
    assert refused.value.code == "TEMPLATE_PARAMS"
    assert "params.buttons" in refused.value.message and "{'" not in refused.value.message
