"""Parsing Meta's webhook payloads (fixtures from Meta's reference) and checking their signature."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from server.channels.whatsapp.signature import signature_for, signature_valid
from server.channels.whatsapp.webhook import MalformedWebhook, parse_webhook

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "whatsapp_webhooks"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def test_every_fixture_parses_without_skipping_anything() -> None:
    names = sorted(p.stem for p in FIXTURES.glob("*.json"))
    assert len(names) >= 20
    for name in names:
        batch = parse_webhook(fixture(name))
        assert batch.skipped == [], name
        events = batch.messages + batch.statuses + batch.templates + batch.identity_changes
        assert len(events) == 1, name


def test_text_message_with_profile_name_and_provider_time() -> None:
    (message,) = parse_webhook(fixture("text")).messages
    assert message.kind == "text"
    assert message.text == "Hola, ¿tenéis envío a Sevilla?"
    assert message.from_ == "16505551234"
    assert message.profile_name == "Sheena Nelson"
    assert message.phone_number_id == "106540352242922"
    assert message.wamid.startswith("wamid.")
    assert message.at == datetime(2025, 2, 12, 0, 43, 44, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "button_id", "text", "reply_type"),
    [
        ("interactive_button_reply", "yes", "Sí, por favor", "button_reply"),
        ("interactive_list_reply", "priority_express", "Priority Mail Express", "list_reply"),
        ("template_button", "buy", "Comprar ahora", "quick_reply"),
    ],
)
def test_every_button_flavour_is_an_answer_id(name: str, button_id: str, text: str, reply_type: str) -> None:
    (message,) = parse_webhook(fixture(name)).messages
    assert (message.kind, message.button_id, message.text, message.reply_type) == (
        "button",
        button_id,
        text,
        reply_type,
    )
    assert message.context is not None and message.context["id"].startswith("wamid.")


def test_template_button_without_payload_answers_with_its_label() -> None:
    payload = fixture("template_button")
    del payload["entry"][0]["changes"][0]["value"]["messages"][0]["button"]["payload"]
    (message,) = parse_webhook(payload).messages
    assert message.button_id == "Comprar ahora"


@pytest.mark.parametrize("kind", ["image", "document", "audio", "video", "sticker"])
def test_media_keeps_id_mime_caption_and_filename(kind: str) -> None:
    (message,) = parse_webhook(fixture(kind)).messages
    assert message.kind == kind
    assert message.text is None and message.button_id is None
    assert message.media is not None
    assert message.media["kind"] == kind
    assert message.media["id"].isdigit()
    assert "/" in message.media["mime_type"]
    if kind == "document":
        assert message.media["filename"] == "factura-2041.pdf"
        assert message.media["caption"] == "Factura"
    if kind == "image":
        assert message.media["caption"] == "El paquete llegó así"
    if kind == "audio":
        assert message.media["voice"] is True


def test_location_contacts_reaction_and_unsupported_are_kept() -> None:
    (location,) = parse_webhook(fixture("location")).messages
    assert location.location == {
        "latitude": 37.3922,
        "longitude": -5.9946,
        "name": "Tienda Centro",
        "address": "Calle Sierpes 1, Sevilla",
        "url": "https://example.com/tienda-centro",
    }
    (contacts,) = parse_webhook(fixture("contacts")).messages
    assert contacts.contacts is not None
    assert contacts.contacts[0]["phones"][0]["wa_id"] == "34600111222"
    (reaction,) = parse_webhook(fixture("reaction")).messages
    assert reaction.reaction is not None and reaction.reaction["emoji"] == "\U0001f44d"
    (unsupported,) = parse_webhook(fixture("unsupported")).messages
    assert unsupported.kind == "unsupported"
    assert unsupported.errors[0]["code"] == 131051


def test_statuses_with_pricing_conversation_and_errors() -> None:
    (sent,) = parse_webhook(fixture("status_sent")).statuses
    assert sent.status == "sent"
    assert sent.pricing == {
        "billable": True,
        "pricing_model": "PMP",
        "type": "regular",
        "category": "marketing",
    }
    assert sent.conversation is not None and sent.conversation["origin"]["type"] == "marketing"
    assert sent.recipient_id == "16505551234"
    (read,) = parse_webhook(fixture("status_read")).statuses
    assert read.pricing is None and read.errors == []
    (failed,) = parse_webhook(fixture("status_failed")).statuses
    assert failed.status == "failed"
    assert failed.error_code == "131026"
    assert failed.error == "Message Undeliverable."


def test_template_updates() -> None:
    (approved,) = parse_webhook(fixture("template_status_approved")).templates
    assert (approved.event, approved.reason, approved.meta_id) == ("APPROVED", None, "1689556908129832")
    assert (approved.name, approved.language, approved.waba_id) == ("cart_reminder", "es", "102290129340398")
    (rejected,) = parse_webhook(fixture("template_status_rejected")).templates
    assert rejected.event == "REJECTED"
    assert rejected.reason is not None and rejected.reason.startswith("INVALID_FORMAT: Variable parameters")
    (paused,) = parse_webhook(fixture("template_status_paused")).templates
    assert (paused.event, paused.reason) == ("PAUSED", None)
    (disabled,) = parse_webhook(fixture("template_status_disabled")).templates
    assert (disabled.event, disabled.reason) == ("DISABLED", None)
    (quality,) = parse_webhook(fixture("template_quality_update")).templates
    assert quality.field == "message_template_quality_update" and quality.event is None


def test_several_entries_and_changes_in_one_body_keep_their_order() -> None:
    body = fixture("text")
    body["entry"][0]["changes"].append(fixture("status_sent")["entry"][0]["changes"][0])
    body["entry"].append(fixture("interactive_button_reply")["entry"][0])
    body["entry"].append({"id": "1", "changes": [{"field": "account_update", "value": {"event": "X"}}]})
    batch = parse_webhook(body)
    assert [m.kind for m in batch.messages] == ["text", "button"]
    assert [s.status for s in batch.statuses] == ["sent"]
    assert batch.skipped == ["entry[2].changes[0]: field 'account_update'"]


def _broken(mutate: Any) -> dict[str, Any]:
    body = copy.deepcopy(fixture("text"))
    mutate(body)
    return body


def _message(body: dict[str, Any]) -> dict[str, Any]:
    return body["entry"][0]["changes"][0]["value"]["messages"][0]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ([], "body must be a JSON object"),
        ({"object": "page", "entry": []}, "body.object"),
        ({"object": "whatsapp_business_account"}, "body.entry must be a JSON array"),
        (_broken(lambda b: b["entry"][0].update(changes="x")), "entry[0].changes must be a JSON array"),
        (_broken(lambda b: b["entry"][0]["changes"][0].update(value=None)), "entry[0].changes[0].value"),
        (_broken(lambda b: _message(b).pop("id")), "messages[0].id"),
        (_broken(lambda b: _message(b).update(timestamp="soon")), "messages[0].timestamp"),
        (_broken(lambda b: _message(b).update(text={"body": 3})), "messages[0].text.body"),
        (_broken(lambda b: _message(b).update(type="interactive")), "messages[0].interactive"),
    ],
)
def test_malformed_bodies_say_where(body: Any, says: str) -> None:
    with pytest.raises(MalformedWebhook) as caught:
        parse_webhook(body)
    assert says in str(caught.value)


def test_status_without_id_is_malformed() -> None:
    body = fixture("status_sent")
    del body["entry"][0]["changes"][0]["value"]["statuses"][0]["id"]
    with pytest.raises(MalformedWebhook, match=r"statuses\[0\]\.id"):
        parse_webhook(body)


def test_signature_is_hmac_sha256_of_the_raw_bytes() -> None:
    body = (FIXTURES / "text.json").read_bytes()
    header = signature_for(body, "app-secret")
    assert header.startswith("sha256=") and len(header) == len("sha256=") + 64
    assert signature_valid(body, "app-secret", header)
    assert signature_valid(body, "app-secret", header.upper().replace("SHA256=", "sha256="))
    assert not signature_valid(body + b" ", "app-secret", header)
    assert not signature_valid(body, "other-secret", header)
    assert not signature_valid(body, "app-secret", None)
    assert not signature_valid(body, "app-secret", header.removeprefix("sha256="))
    assert not signature_valid(body, "", signature_for(body, ""))
