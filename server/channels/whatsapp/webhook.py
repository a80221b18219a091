"""Parse a WhatsApp Business Account webhook body into typed events, checking its shape on the way.

Meta batches several ``entry[].changes[]`` in one POST. ``field == "messages"`` carries what
customers sent (``messages[]``, with their profile in ``contacts[]``) and what became of ours
(``statuses[]``); ``message_template_*`` / ``template_category_update`` carry template news;
``user_id_update`` and identity system messages say a customer's BSUID or number changed (who
a webhook is about, phone or BSUID: ``webhook_identities.py``).
Anything else is skipped (and named in ``WebhookBatch.skipped``). A body that does not have this
shape raises ``MalformedWebhook`` with a message saying where, so the endpoint can answer 400.

Pure: no I/O, no clock (timestamps come from the payload).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from server.channels.whatsapp.form_answers import read_form_answer
from server.channels.whatsapp.webhook_identities import (
    IdentityChange,
    Person,
    people,
    recipient,
    sender,
    system_change,
    user_id_updates,
)

OBJECT = "whatsapp_business_account"
MEDIA_KINDS = ("image", "video", "audio", "document", "sticker")
TEMPLATE_FIELDS = (
    "message_template_status_update",
    "message_template_quality_update",
    "template_category_update",
)

Json = dict[str, Any]


class MalformedWebhook(ValueError):
    """The body is not a WhatsApp webhook; the message says which part is wrong."""


@dataclass(frozen=True)
class InboundWhatsApp:
    """One message a customer sent. ``kind`` is ``text`` or ``button`` for what flows answer to.

    Buttons of every flavour (interactive ``button_reply``/``list_reply``, template quick replies)
    become kind ``button`` with the answer id in ``button_id`` and the label in ``text``;
    ``reply_type`` keeps which flavour it was. A WhatsApp Flow's answer is kind ``nfm_reply``
    with ``form`` = {name, body, response (``response_json`` decoded), error}. Other kinds keep
    Meta's type name. ``context`` is what a reply quotes (``id``: the quoted message's wamid).
    The sender is ``from_`` (their phone, digits) when Meta shares it, and ``user_id`` (their
    BSUID) always since 2026; ``username`` is shown, never used to find them.
    """

    wamid: str
    from_: str | None
    at: datetime
    kind: str
    phone_number_id: str | None = None
    profile_name: str | None = None
    user_id: str | None = None
    parent_user_id: str | None = None
    username: str | None = None
    text: str | None = None
    button_id: str | None = None
    reply_type: str | None = None
    media: Json | None = None
    location: Json | None = None
    contacts: list[Json] | None = None
    reaction: Json | None = None
    context: Json | None = None
    form: Json | None = None
    errors: list[Json] = field(default_factory=list)
    raw: Json = field(default_factory=dict)


@dataclass(frozen=True)
class StatusUpdate:
    """What became of a message we sent: ``sent``/``delivered``/``read``/``failed`` (and rarer ones)."""

    wamid: str
    status: str
    at: datetime
    phone_number_id: str | None = None
    recipient_id: str | None = None
    recipient: Person = field(default_factory=Person)  # phone and BSUID, as far as the report says
    errors: list[Json] = field(default_factory=list)
    pricing: Json | None = None
    conversation: Json | None = None

    @property
    def error_code(self) -> str | None:
        return str(self.errors[0]["code"]) if self.errors and self.errors[0].get("code") is not None else None

    @property
    def error(self) -> str | None:
        """The most specific text Meta gives: details, else message, else title."""
        if not self.errors:
            return None
        first = self.errors[0]
        details = (
            (first.get("error_data") or {}).get("details")
            if isinstance(first.get("error_data"), dict)
            else None
        )
        return details or first.get("message") or first.get("title")


@dataclass(frozen=True)
class TemplateUpdate:
    """A template change: ``field`` says which webhook, ``event`` the new status (status updates only)."""

    field: str
    waba_id: str | None
    meta_id: str | None
    name: str | None
    language: str | None
    event: str | None = None
    reason: str | None = None
    raw: Json = dataclasses.field(default_factory=dict)  # `field` is a field here


@dataclass
class WebhookBatch:
    messages: list[InboundWhatsApp] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)
    templates: list[TemplateUpdate] = field(default_factory=list)
    identity_changes: list[IdentityChange] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def parse_webhook(payload: Any) -> WebhookBatch:
    """Every event in ``payload`` (already decoded JSON), in the order Meta listed them."""
    body = _object(payload, "body")
    kind = body.get("object")
    if kind != OBJECT:
        raise MalformedWebhook(f"body.object must be {OBJECT!r}, got {kind!r}")
    batch = WebhookBatch()
    for i, entry_value in enumerate(_list(body.get("entry"), "body.entry")):
        where = f"entry[{i}]"
        entry = _object(entry_value, where)
        waba_id = _optional_str(entry.get("id"), f"{where}.id")
        for j, change_value in enumerate(_list(entry.get("changes", []), f"{where}.changes")):
            at = f"{where}.changes[{j}]"
            change = _object(change_value, at)
            name = change.get("field")
            value = _object(change.get("value"), f"{at}.value")
            if name == "messages":
                _messages_change(value, at, batch)
            elif name in TEMPLATE_FIELDS:
                batch.templates.append(_template_update(str(name), waba_id, value, f"{at}.value"))
            elif name == "user_id_update":
                batch.identity_changes.extend(user_id_updates(value, _phone_number_id(value, at)))
            else:
                batch.skipped.append(f"{at}: field {name!r}")
    return batch


def _messages_change(value: Json, at: str, batch: WebhookBatch) -> None:
    phone_number_id = _phone_number_id(value, at)
    _list(value.get("contacts", []), f"{at}.value.contacts")
    known = people(value)
    for k, message in enumerate(_list(value.get("messages", []), f"{at}.value.messages")):
        where = f"{at}.value.messages[{k}]"
        raw = _object(message, where)
        person = sender(raw, known)
        change = system_change(raw, person, _timestamp(raw.get("timestamp"), f"{where}.timestamp"))
        if change is not None:
            batch.identity_changes.append(replace(change, phone_number_id=phone_number_id))
            continue
        if not person:
            raise MalformedWebhook(f"{where}.from (or .from_user_id): the message names no sender")
        parsed = _message(raw, where, person)
        batch.messages.append(replace(parsed, phone_number_id=phone_number_id))
    for k, status in enumerate(_list(value.get("statuses", []), f"{at}.value.statuses")):
        where = f"{at}.value.statuses[{k}]"
        raw = _object(status, where)
        update = _status(raw, where, phone_number_id)
        batch.statuses.append(replace(update, recipient=recipient(raw, known)))


def _phone_number_id(value: Json, at: str) -> str | None:
    metadata = value.get("metadata")
    if metadata is None:
        return None
    return _optional_str(
        _object(metadata, f"{at}.value.metadata").get("phone_number_id"),
        f"{at}.value.metadata.phone_number_id",
    )


def _message(message: Json, where: str, person: Person) -> InboundWhatsApp:
    wamid = _required_str(message.get("id"), f"{where}.id")
    at = _timestamp(message.get("timestamp"), f"{where}.timestamp")
    kind = _required_str(message.get("type"), f"{where}.type")
    errors = [e for e in message.get("errors") or [] if isinstance(e, dict)]
    context = message.get("context") if isinstance(message.get("context"), dict) else None
    common: dict[str, Any] = {"wamid": wamid, "at": at, "errors": errors, "context": context}
    common.update(
        from_=person.wa_id,
        user_id=person.user_id,
        parent_user_id=person.parent_user_id,
        username=person.username,
        profile_name=person.name,
    )
    common["raw"] = message
    body = message.get(kind)
    if kind == "text":
        text = _object(body, f"{where}.text").get("body")
        return InboundWhatsApp(kind="text", text=_required_str(text, f"{where}.text.body"), **common)
    if kind == "interactive":
        return _interactive(_object(body, f"{where}.interactive"), f"{where}.interactive", common)
    if kind == "button":
        button = _object(body, f"{where}.button")
        label = _optional_str(button.get("text"), f"{where}.button.text")
        payload = _optional_str(button.get("payload"), f"{where}.button.payload") or label
        if payload is None:
            raise MalformedWebhook(f"{where}.button needs a payload or a text")
        return InboundWhatsApp(
            kind="button", button_id=payload, text=label, reply_type="quick_reply", **common
        )
    if kind in MEDIA_KINDS:
        media = _object(body, f"{where}.{kind}")
        return InboundWhatsApp(
            kind=kind,
            media={
                "kind": kind,
                "id": _optional_str(media.get("id"), f"{where}.{kind}.id"),
                "mime_type": media.get("mime_type"),
                "sha256": media.get("sha256"),
                "caption": media.get("caption"),
                "filename": media.get("filename"),
                "animated": media.get("animated"),
                "voice": media.get("voice"),
            },
            **common,
        )
    if kind == "location":
        location = _object(body, f"{where}.location")
        keys = ("latitude", "longitude", "name", "address", "url")
        return InboundWhatsApp(kind="location", location={k: location.get(k) for k in keys}, **common)
    if kind == "contacts":
        cards = [c for c in _list(body, f"{where}.contacts") if isinstance(c, dict)]
        return InboundWhatsApp(kind="contacts", contacts=cards, **common)
    if kind == "reaction":
        reaction = _object(body, f"{where}.reaction")
        return InboundWhatsApp(
            kind="reaction",
            reaction={"emoji": reaction.get("emoji"), "message_id": reaction.get("message_id")},
            **common,
        )
    # unsupported, order, system, request_welcome, ...: recorded as they came.
    return InboundWhatsApp(kind=kind, **common)


def _interactive(interactive: Json, where: str, common: dict[str, Any]) -> InboundWhatsApp:
    reply_type = interactive.get("type")
    if reply_type in ("button_reply", "list_reply"):
        reply = _object(interactive.get(reply_type), f"{where}.{reply_type}")
        answer = _required_str(reply.get("id"), f"{where}.{reply_type}.id")
        title = _optional_str(reply.get("title"), f"{where}.{reply_type}.title")
        return InboundWhatsApp(kind="button", button_id=answer, text=title, reply_type=reply_type, **common)
    if reply_type == "nfm_reply":
        return InboundWhatsApp(
            kind="nfm_reply",
            reply_type="nfm_reply",
            form=_form_answer(
                _object(interactive.get("nfm_reply"), f"{where}.nfm_reply"), f"{where}.nfm_reply"
            ),
            **common,
        )
    # Future kinds: recorded as they came, not an answer.
    return InboundWhatsApp(kind="interactive", reply_type=str(reply_type), **common)


def _form_answer(reply: Json, where: str) -> Json:
    """A WhatsApp Flow's answer: ``response_json`` is a JSON string holding the form's fields.

    An answer that cannot be read is kept with why (``server/channels/whatsapp/form_answers.py``), never
    refused: the run treats it as an answer that does not fit.
    """
    response, error = read_form_answer(reply.get("response_json"))
    return {
        "name": _optional_str(reply.get("name"), f"{where}.name"),
        "body": _optional_str(reply.get("body"), f"{where}.body"),
        "response": response,
        "error": f"{where}.response_json: {error}" if error else None,
    }


def _status(status: Json, where: str, phone_number_id: str | None) -> StatusUpdate:
    name = _required_str(status.get("status"), f"{where}.status")
    if not name.replace("_", "").isalpha():
        raise MalformedWebhook(f"{where}.status: {name!r} is not a status name")
    pricing = status.get("pricing")
    conversation = status.get("conversation")
    return StatusUpdate(
        wamid=_required_str(status.get("id"), f"{where}.id"),
        status=name.lower(),
        at=_timestamp(status.get("timestamp"), f"{where}.timestamp"),
        phone_number_id=phone_number_id,
        recipient_id=_optional_str(status.get("recipient_id"), f"{where}.recipient_id"),
        errors=[e for e in status.get("errors") or [] if isinstance(e, dict)],
        pricing=pricing if isinstance(pricing, dict) else None,
        conversation=conversation if isinstance(conversation, dict) else None,
    )


def _template_update(name: str, waba_id: str | None, value: Json, where: str) -> TemplateUpdate:
    meta_id = value.get("message_template_id")
    event = value.get("event")
    reason = value.get("reason")
    if name == "message_template_status_update":
        if not isinstance(event, str) or not event:
            raise MalformedWebhook(f"{where}.event must name the template status")
        _required_str(value.get("message_template_name"), f"{where}.message_template_name")
    if not isinstance(reason, str) or reason.upper() == "NONE" or not reason.strip():
        reason = None
    info = value.get("rejection_info")
    if reason is not None and isinstance(info, dict) and info.get("reason"):
        reason = f"{reason}: {info['reason']}"
    return TemplateUpdate(
        field=name,
        waba_id=waba_id,
        meta_id=str(meta_id) if meta_id is not None else None,
        name=value.get("message_template_name"),
        language=value.get("message_template_language"),
        event=event.upper() if isinstance(event, str) else None,
        reason=reason,
        raw=value,
    )


def _object(value: Any, where: str) -> Json:
    if not isinstance(value, dict):
        raise MalformedWebhook(f"{where} must be a JSON object, got {type(value).__name__}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise MalformedWebhook(f"{where} must be a JSON array, got {type(value).__name__}")
    return value


def _required_str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise MalformedWebhook(f"{where} must be a non-empty string")
    return value


def _optional_str(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # Meta sends some ids as numbers
    if not isinstance(value, str):
        raise MalformedWebhook(f"{where} must be a string")
    return value


def _timestamp(value: Any, where: str) -> datetime:
    """Meta's timestamps are Unix seconds, usually as a string."""
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        raise MalformedWebhook(f"{where} must be Unix seconds, got {value!r}") from None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise MalformedWebhook(f"{where}: {seconds} is not a valid time") from None
