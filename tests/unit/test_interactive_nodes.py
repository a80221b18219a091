"""Interactive message options and WhatsApp Flow nodes: validator codes naming the node, payload
refusals, the reply rules over list rows and carousel quick replies, and nfm_reply parsing."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from server.channels.whatsapp.payloads import PayloadError, build
from server.channels.whatsapp.webhook import parse_webhook
from server.machines import runner
from server.machines.catalog import Catalog
from server.machines.definition import parse_flow
from server.machines.flow_checks.issues import FlowIssue
from server.machines.replies import Choice, choose
from server.machines.validator import validate
from tests.support.openapi import describe, operation
from tests.unit.test_replies import Contact, compiled

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "whatsapp_webhooks"
SEND = operation("/{Version}/{Phone-Number-ID}/messages", "post")
TO = "+34600111222"


def flow(*nodes: dict[str, Any]) -> Any:
    return parse_flow({"name": "Test", "start": nodes[0]["id"], "nodes": list(nodes)})


def msg(**extra: Any) -> dict[str, Any]:
    return {"id": "n", "type": "message", "text": "¿Qué quieres?", **extra}


def issue(found: list[FlowIssue], code: str) -> FlowIssue:
    matching = [i for i in found if i.code == code]
    assert matching, found
    assert all(i.node_id == "n" and "'n'" in i.message for i in matching)
    return matching[0]


def rows(count: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"id": f"r{i}", "title": f"Fila {i}", **extra} for i in range(count)]


def image_card(**action: Any) -> dict[str, Any]:
    return {"media": {"kind": "image", "url": "https://cdn.example/a.jpg"}, **action}


LINK = {"title": "Ver", "url": "https://shop.example"}
FORM = {
    "id": "n",
    "type": "whatsapp_flow",
    "text": "Tus datos",
    "flow_id": "1187391629463213",
    "screen": "DATOS",
    "cta": "Rellenar",
    "fields": {"email": "email"},
}


@pytest.mark.parametrize(
    ("node", "code"),
    [
        (msg(buttons=rows(11)), "TOO_MANY_BUTTONS"),
        (msg(buttons=rows(4, title="Una fila de lista larguísima")), "BUTTON_TITLE_TOO_LONG"),
        (msg(buttons=[{"id": "x" * 201, "title": "Fila"}, *rows(3)]), "BUTTON_ID_TOO_LONG"),
        (msg(buttons=rows(4), list_button="Ver todas las opciones"), "LIST_BUTTON_TOO_LONG"),
        (msg(list_button="Ver"), "LIST_WITHOUT_ROWS"),
        (
            msg(text=None, list_button="Ver", media={"kind": "image", "url": "https://x/y.png"}),
            "INTERACTIVE_TEXT_MISSING",
        ),
        (msg(buttons=rows(4, description="d" * 73)), "ROW_DESCRIPTION_TOO_LONG"),
        (msg(buttons=rows(4, section="s" * 25)), "SECTION_TITLE_TOO_LONG"),
        (msg(buttons=[{**rows(1)[0], "section": "A"}, *rows(4)[1:]]), "SECTION_MISSING"),
        (
            msg(buttons=[{**r, "section": s} for r, s in zip(rows(4), "ABAB", strict=True)]),
            "SECTION_SPLIT",
        ),
        (msg(buttons=rows(4), media={"kind": "image", "url": "https://x/y.png"}), "INTERACTIVE_MEDIA"),
        (
            msg(text=None, media={"kind": "image", "url": "https://x/y.png"}, link=LINK),
            "INTERACTIVE_TEXT_MISSING",
        ),
        (msg(text="x" * 1025, link=LINK), "INTERACTIVE_TEXT_TOO_LONG"),
        (msg(buttons=rows(2), link=LINK), "INTERACTIVE_CONFLICT"),
        (msg(link={"title": "Ver el pedido completo", "url": "https://x"}), "LINK_TITLE_TOO_LONG"),
        (msg(link={"title": "Ver", "url": "shop.example/p"}), "LINK_URL_INVALID"),
        (msg(location_request={}, media={"kind": "image", "url": "https://x/y.png"}), "INTERACTIVE_MEDIA"),
        (msg(carousel=[image_card(link=LINK)]), "CAROUSEL_CARDS"),
        (msg(carousel=[image_card(link=LINK)] * 11), "CAROUSEL_CARDS"),
        (
            msg(
                carousel=[
                    image_card(link=LINK),
                    {"media": {"kind": "document", "url": "https://x/f.pdf"}, "link": LINK},
                ]
            ),
            "CAROUSEL_CARD_MEDIA",
        ),
        (
            msg(carousel=[image_card(link=LINK, text="t" * 161), image_card(link=LINK)]),
            "CAROUSEL_CARD_TEXT_TOO_LONG",
        ),
        (msg(carousel=[image_card(), image_card(link=LINK)]), "CAROUSEL_CARD_ACTION"),
        (
            msg(carousel=[image_card(link=LINK), image_card(buttons=[{"id": "b", "title": "B"}])]),
            "CAROUSEL_CARDS_DIFFER",
        ),
        ({**FORM, "flow_id": "signup-form"}, "FLOW_ID_INVALID"),
        ({**FORM, "cta": "Rellena tus datos para el envío"}, "FLOW_CTA_TOO_LONG"),
        ({**FORM, "data": {}}, "FLOW_DATA_EMPTY"),
        ({**FORM, "fields": {}}, "FORM_SAVES_NOTHING"),
        (
            {"id": "n", "type": "template", "template": "t", "buttons": [{"id": "b", "description": "d"}]},
            "LIST_OPTION_ON_TEMPLATE",
        ),
    ],
)
def test_each_interactive_limit_is_an_issue_naming_the_node(node: dict[str, Any], code: str) -> None:
    issue(validate(flow(node)), code)


def test_interactive_options_that_fit_have_no_issue() -> None:
    nodes = [
        msg(buttons=rows(10, section="Todo", description="Una línea más")),
        msg(link=LINK, media={"kind": "video", "url": "https://cdn.example/v.mp4"}),
        msg(location_request={"next": None}),
        msg(carousel=[image_card(buttons=[{"id": f"b{i}", "title": "Lo quiero"}]) for i in range(10)]),
        FORM,
    ]
    for node in nodes:
        assert validate(flow(node)) == [], node


def test_catalog_checks_of_location_and_form_fields() -> None:
    fields = {"lat": ("NUMBER", []), "born": ("DATE", []), "email": ("TEXT", [])}
    node = msg(location_request={"save": {"latitude": "lat", "address": "born", "name": "ghost"}})
    found = validate(flow(node), Catalog(fields=fields))
    assert "'born' is DATE; a address fits a TEXT field" in issue(found, "WRONG_VALUE_TYPE").message
    assert "'ghost'" in issue(found, "UNKNOWN_FIELD").message
    form = validate(flow({**FORM, "fields": {"email": "email", "talla": "size"}}), Catalog(fields=fields))
    assert "fields['talla']" in issue(form, "UNKNOWN_FIELD").message


def test_a_whatsapp_flow_needs_the_window_like_any_simple_message() -> None:
    found = validate(flow({**FORM, "next": None}), Catalog(starts_from_webhook=True))
    assert issue(found, "SIMPLE_MESSAGE_AFTER_WEBHOOK_START").severity == "WARNING"


def test_a_title_shared_by_several_carousel_buttons_chooses_none_but_numbers_still_do() -> None:
    buttons = [("a", "Lo quiero"), ("b", "Lo quiero"), ("c", "Otra")]
    assert choose(buttons, "lo quiero", None, False, False) == Choice("none")
    assert choose(buttons, "2", None, False, False) == Choice("button", "b", "number")
    assert choose(buttons, "otra", None, False, False) == Choice("button", "c", "title")


# --- payloads ---------------------------------------------------------------------------------


def conforms(body: dict[str, Any]) -> dict[str, Any]:
    assert SEND.request is not None
    errors = list(SEND.request.iter_errors(body))
    assert not errors, describe(errors)
    return body


@pytest.mark.parametrize(
    ("message", "why"),
    [
        ({"kind": "cta_url", "text": "Hola", "link": {"title": "Ver", "url": "ftp://x"}}, "http"),
        ({"kind": "cta_url", "text": "Hola", "link": {"title": "x" * 21, "url": "https://x"}}, "1-20"),
        ({"kind": "location_request", "text": " "}, "needs text"),
        ({"kind": "carousel", "text": "Hola", "cards": [image_card(link=LINK)]}, "2 to 10 cards"),
        (
            {
                "kind": "carousel",
                "text": "Hola",
                "cards": [image_card(link=LINK), image_card(buttons=[{"id": "b", "title": "B"}])],
            },
            "same kind",
        ),
        (
            {
                "kind": "carousel",
                "text": "Hola",
                "cards": [image_card(buttons=[{"id": "b", "title": "B"}] * 3)] * 2,
            },
            "1 to 2 quick replies",
        ),
        ({"kind": "flow", "text": "Hola", "flow": {"id": "abc", "screen": "S", "cta": "Ir"}}, "numeric id"),
        ({"kind": "flow", "text": "Hola", "flow": {"id": "1", "screen": "S", "cta": "x" * 31}}, "1-30"),
    ],
)
def test_what_whatsapp_would_refuse_is_refused_before_sending(message: dict[str, Any], why: str) -> None:
    with pytest.raises(PayloadError, match=why):
        build({**message, "to": TO})


def test_a_draft_flow_and_a_video_carousel_conform() -> None:
    draft = build(
        {
            "kind": "flow",
            "to": TO,
            "text": "Prueba",
            "flow": {"id": "1", "screen": "S", "cta": "Ir", "mode": "draft"},
        }
    )
    assert conforms(draft)["interactive"]["action"]["parameters"]["mode"] == "draft"
    video = {"media": {"kind": "video", "url": "https://cdn.example/v.mp4"}, "link": LINK}
    carousel = conforms(build({"kind": "carousel", "to": TO, "text": "Mira", "cards": [video, video]}))
    assert carousel["interactive"]["action"]["cards"][0]["header"]["type"] == "video"


# --- inbound ----------------------------------------------------------------------------------


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def test_a_flow_answer_is_parsed_with_its_fields_and_the_message_it_answers() -> None:
    (message,) = parse_webhook(fixture("interactive_nfm_reply")).messages
    assert (message.kind, message.reply_type) == ("nfm_reply", "nfm_reply")
    assert message.form is not None and message.form["body"] == "Sent" and message.form["error"] is None
    assert message.form["response"]["talla"] == "M" and message.form["response"]["acepta_novedades"] is True
    assert message.context is not None and message.context["id"].startswith("wamid.")


@pytest.mark.parametrize("broken", ["{not json", "[1, 2]", "[" * 50 + "]" * 50])
def test_a_flow_answer_that_cannot_be_read_is_kept_with_why_not_refused(broken: str) -> None:
    body = copy.deepcopy(fixture("interactive_nfm_reply"))
    body["entry"][0]["changes"][0]["value"]["messages"][0]["interactive"]["nfm_reply"]["response_json"] = (
        broken
    )
    (message,) = parse_webhook(body).messages
    assert message.kind == "nfm_reply" and message.form is not None
    assert message.form["response"] is None and "response_json" in message.form["error"]


def test_a_quoting_text_keeps_what_it_quotes() -> None:
    (message,) = parse_webhook(fixture("text_quoting")).messages
    assert message.kind == "text" and message.context is not None
    assert message.context["id"] == "wamid.HBgLMTY1MDUwNzY1MjAVAgARGBJBMjQ4RjNBMUI5QzA3RDRFNzkA"


# --- the runner, on plain documents -------------------------------------------------------------


def test_a_form_answer_with_another_forms_token_is_no_answer_and_a_valid_one_resets_the_count() -> None:
    fields = {"size": ("FIXED", ["S", "M", "L"])}
    form = {**FORM, "id": "ask", "fields": {"talla": "size"}, "next": "done"}
    customer = Contact(compiled(form, {"id": "done", "type": "tag", "add": ["ok"], "next": None}), fields)
    run = customer.start()
    sent = customer.document["outbox"][0]
    assert sent["kind"] == "flow" and sent["flow"]["token"] == f"konvo:{run['id']}:ask"

    def answer(**response: Any) -> None:
        form_reply = {"name": "flow", "body": "Sent", "response": response, "error": None}
        runner.deliver_other_message(customer.turn(), customer.flow, run, "nfm_reply", form=form_reply)

    answer(flow_token="konvo:run_old:ask", talla="M")
    assert run["status"] == "waiting" and customer.document["variables"] == {}
    assert run["steps"][-1]["action"] == "reply_not_understood"

    answer(flow_token=f"konvo:{run['id']}:ask", talla="XL")
    assert run["invalid_tries"] == {"ask": 1} and len(customer.document["outbox"]) == 2
    assert customer.document["outbox"][1]["text"] == "Tus datos\n\nS / M / L"

    answer(flow_token="unused", talla=" m ")
    assert run["status"] == "completed" and customer.document["variables"] == {"size": "M"}
    assert run["invalid_tries"] == {} and customer.document["tags"] == ["ok"]
    assert run["form"] == {"talla": " m "}


@pytest.mark.parametrize("fields", [{"a.b": 1}, {"$where": "1"}, {"ok": [{"": 2}]}])
def test_field_names_a_document_store_cannot_keep_make_the_answer_unreadable(fields: dict[str, Any]) -> None:
    body = copy.deepcopy(fixture("interactive_nfm_reply"))
    reply = body["entry"][0]["changes"][0]["value"]["messages"][0]["interactive"]["nfm_reply"]
    reply["response_json"] = json.dumps(fields)
    (message,) = parse_webhook(body).messages
    assert message.form is not None and message.form["response"] is None
    assert "field named" in message.form["error"]
