"""Outbox messages -> Graph API bodies: each kind conforms to Meta's schema; refusals say why."""

from __future__ import annotations

from typing import Any

import pytest

from server.channels.whatsapp.errors import classify, transport_failure
from server.channels.whatsapp.payloads import PayloadError, build
from tests.support.graph_api_fake import ERRORS, graph_error
from tests.support.openapi import describe, operation

SEND = operation("/{Version}/{Phone-Number-ID}/messages", "post")
TO = "+34600111222"

TEMPLATE = {
    "name": "order_update",
    "language": "es",
    "category": "UTILITY",
    "status": "APPROVED",
    "components": [
        {"type": "HEADER", "format": "TEXT", "text": "Pedido {{1}}"},
        {"type": "BODY", "text": "Hola {{1}}, tu pedido {{2}} está en camino"},
        {
            "type": "BUTTONS",
            "buttons": [
                {"type": "QUICK_REPLY", "text": "Gracias"},
                {"type": "URL", "text": "Seguir", "url": "https://shop.example/track/{{1}}"},
                {"type": "QUICK_REPLY", "text": "Ayuda"},
                {"type": "COPY_CODE"},
            ],
        },
    ],
}


def conforms(body: dict[str, Any]) -> dict[str, Any]:
    assert SEND.request is not None
    errors = list(SEND.request.iter_errors(body))
    assert not errors, describe(errors)
    return body


def test_text_sets_preview_for_links() -> None:
    body = conforms(build({"kind": "text", "to": TO, "text": "Mira https://shop.example"}))
    assert body["to"] == "34600111222"
    assert body["text"] == {"body": "Mira https://shop.example", "preview_url": True}
    assert conforms(build({"kind": "text", "to": TO, "text": "hola"}))["text"]["preview_url"] is False


@pytest.mark.parametrize("kind", ["image", "video", "audio", "document"])
def test_media_by_link(kind: str) -> None:
    media = {"kind": kind, "url": f"https://cdn.example/x.{kind}", "caption": None, "filename": None}
    if kind == "document":
        media.update(caption="Factura", filename="factura.pdf")
    body = conforms(build({"kind": "media", "to": TO, "media": media}))
    assert body["type"] == kind and body[kind]["link"] == media["url"]
    if kind == "document":
        assert body[kind] == {"link": media["url"], "caption": "Factura", "filename": "factura.pdf"}


def test_audio_cannot_carry_text() -> None:
    with pytest.raises(PayloadError, match="audio"):
        build(
            {
                "kind": "media",
                "to": TO,
                "text": "escucha",
                "media": {"kind": "audio", "url": "https://a/b.ogg"},
            }
        )


def test_reply_buttons_and_media_header() -> None:
    message = {
        "kind": "buttons",
        "to": TO,
        "text": "¿Te ayudamos?",
        "buttons": [{"id": "yes", "title": "Sí"}, {"id": "no", "title": "No"}],
        "media": {"kind": "image", "url": "https://cdn.example/a.png"},
    }
    body = conforms(build(message))
    interactive = body["interactive"]
    assert interactive["type"] == "button"
    assert [b["reply"]["id"] for b in interactive["action"]["buttons"]] == ["yes", "no"]
    assert interactive["header"] == {"type": "image", "image": {"link": "https://cdn.example/a.png"}}


@pytest.mark.parametrize(
    ("buttons", "why"),
    [
        ([{"id": f"b{i}", "title": f"B{i}"} for i in range(4)], "1 to 3"),
        ([{"id": "a", "title": "x" * 21}], "1-20"),
        ([{"id": "a", "title": "Same"}, {"id": "b", "title": "Same"}], "titles must be different"),
    ],
)
def test_buttons_whatsapp_refuses(buttons: list[dict[str, str]], why: str) -> None:
    with pytest.raises(PayloadError, match=why):
        build({"kind": "buttons", "to": TO, "text": "?", "buttons": buttons})


def test_list_of_rows() -> None:
    rows = [{"id": f"r{i}", "title": f"Opción {i}", "description": "d"} for i in range(10)]
    body = conforms(
        build({"kind": "list", "to": TO, "text": "Elige", "list": {"button": "Ver opciones", "rows": rows}})
    )
    assert body["interactive"]["type"] == "list"
    assert len(body["interactive"]["action"]["sections"][0]["rows"]) == 10
    with pytest.raises(PayloadError, match="at most 10 rows"):
        build(
            {"kind": "list", "to": TO, "text": "Elige", "list": {"button": "Ver", "rows": [*rows, rows[0]]}}
        )


def test_template_parameters_and_quick_reply_payloads() -> None:
    message = {
        "kind": "template",
        "to": TO,
        "template": {
            "name": "order_update",
            "language": "es",
            "params": {"header": ["A-17"], "body": ["Ana", "A-17"], "buttons": ["A-17", "SAVE10"]},
        },
        "buttons": [{"id": "thanks", "title": "Gracias"}, {"id": "help", "title": "Ayuda"}],
    }
    body = conforms(build(message, TEMPLATE))
    template = body["template"]
    assert template["language"] == {"policy": "deterministic", "code": "es"}
    parts = {(c["type"], c.get("index")): c for c in template["components"]}
    assert parts[("header", None)]["parameters"] == [{"type": "text", "text": "A-17"}]
    assert [p["text"] for p in parts[("body", None)]["parameters"]] == ["Ana", "A-17"]
    # quick replies carry the node's button ids, in order, at the template's button indexes
    assert parts[("button", "0")]["parameters"] == [{"type": "payload", "payload": "thanks"}]
    assert parts[("button", "2")]["parameters"] == [{"type": "payload", "payload": "help"}]
    assert parts[("button", "1")]["sub_type"] == "url"
    assert parts[("button", "3")]["parameters"] == [{"type": "coupon_code", "coupon_code": "SAVE10"}]


@pytest.mark.parametrize(
    ("params", "why"),
    [
        ({"header": ["A"], "body": ["Ana"], "buttons": ["x", "y"]}, "2 body parameter"),
        ({"header": ["A"], "body": ["Ana", ""], "buttons": ["x", "y"]}, "empty"),
        ({"header": ["A"], "body": ["Ana", "a\nb"], "buttons": ["x", "y"]}, "new line"),
        ({"header": ["A"], "body": ["Ana", "b"], "buttons": ["x"]}, "copy-code"),
        ({"body": ["Ana", "b"], "buttons": ["x", "y"]}, "header parameter"),
    ],
)
def test_template_refusals(params: dict[str, Any], why: str) -> None:
    message = {
        "kind": "template",
        "to": TO,
        "template": {"name": "order_update", "language": "es", "params": params},
    }
    with pytest.raises(PayloadError, match=why):
        build(message, TEMPLATE)


def test_media_header_template() -> None:
    template = {
        "name": "promo",
        "language": "es",
        "components": [{"type": "HEADER", "format": "IMAGE"}, {"type": "BODY", "text": "Oferta"}],
    }
    message = {"kind": "template", "to": TO, "template": {"name": "promo", "language": "es", "params": {}}}
    with pytest.raises(PayloadError, match="media URL"):
        build(message, template)
    message["template"]["params"] = {"header": ["https://cdn.example/p.jpg"]}
    body = conforms(build(message, template))
    assert body["template"]["components"][0]["parameters"][0]["image"]["link"] == "https://cdn.example/p.jpg"


# --- classification of Graph API failures -------------------------------------------------------


@pytest.mark.parametrize("code", [130429, 131000, 2, 4, 1])
def test_rate_limits_and_server_trouble_are_retried(code: int) -> None:
    status, body = graph_error(code)
    assert classify(status, body).verdict == "retry"


@pytest.mark.parametrize("code", [131048, 131049, 131056])
def test_this_recipient_later_goes_back_to_the_send_policy(code: int) -> None:
    """Retried in seconds these only earn the same answer: the policy holds them (docs/sending.md)."""
    status, body = graph_error(code)
    failure = classify(status, body)
    assert failure.verdict == "later" and failure.code == str(code)


@pytest.mark.parametrize(
    "code", [131047, 131026, 131008, 131009, 132000, 132001, 132012, 131051, 100, 132015]
)
def test_message_problems_are_final(code: int) -> None:
    status, body = graph_error(code)
    failure = classify(status, body)
    assert failure.verdict == "permanent" and failure.code == str(code)
    # Our words for the code: never the remote body, which a tenant-chosen base URL could fill.
    assert failure.message.startswith(f"WhatsApp API error {code}: ")
    assert ERRORS[code][1] not in failure.message and ERRORS[code][2] not in failure.message


def test_auth_problems_wait_for_a_fix_and_bare_statuses() -> None:
    assert classify(*graph_error(190)).verdict == "later"
    assert classify(503, None).verdict == "retry"
    assert classify(429, "busy", retry_after=3).retry_after == 3
    assert classify(400, None).verdict == "permanent"
    assert transport_failure().verdict == "retry" and transport_failure().code == "UNREACHABLE"
    maybe_received = transport_failure(maybe_received=True)
    assert maybe_received.verdict == "unknown" and maybe_received.code == "OUTCOME_UNKNOWN"
