"""What a sandbox customer sends besides text and taps, checked and shaped as WhatsApp reports it.

A test or a person playing the customer (``sandboxInbound``, ``konvo chat``) can share a
location (the answer to a location request), send a WhatsApp Flow's answer (the form's fields,
as ``nfm_reply.response_json`` holds them), react to a message, or quote one. The stored
record has the same fields the WhatsApp webhook stores, so flows, the inbox and the sandbox
treat both channels alike.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from server.channels.whatsapp.form_answers import read_form_answer
from server.errors import InvalidInput
from server.text_input import MAX_BUTTON_ID, checked_characters

MAX_PLACE_TEXT = 1000  # a location's name or address
MAX_FORM_JSON = 16_384  # a form's answer, as JSON
MAX_EMOJI = 16  # one emoji, with its modifiers and joiners


@dataclass(frozen=True)
class SandboxShare:
    """``location`` {latitude, longitude, name?, address?}; ``form`` the form's fields;
    ``reaction`` {message_id, emoji} (an empty emoji removes one); ``reply_to`` a message id."""

    location: dict[str, Any] | None = None
    form: dict[str, Any] | None = None
    reaction: dict[str, Any] | None = None
    reply_to: str | None = None

    def record(self) -> dict[str, Any]:
        """The inbound record's fields: ``kind`` and its part, and ``context`` for a quote."""
        given = [name for name in ("location", "form", "reaction") if getattr(self, name) is not None]
        if len(given) > 1:
            raise InvalidInput(f"send one thing at a time, not {' and '.join(given)}")
        out: dict[str, Any] = {}
        if self.reply_to is not None:
            checked_characters(self.reply_to, field="replyTo", what="a message id", limit=MAX_BUTTON_ID)
            out["context"] = {"id": self.reply_to}
        if self.location is not None:
            out.update(kind="location", location=_location(self.location))
        elif self.form is not None:
            out.update(kind="nfm_reply", form=_form(self.form))
        elif self.reaction is not None:
            out.update(kind="reaction", reaction=_reaction(self.reaction))
        return out


def _location(location: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part, limit in (("latitude", 90.0), ("longitude", 180.0)):
        value = location.get(part)
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
            or abs(value) > limit
        ):
            raise InvalidInput(
                f"location.{part} must be a number between -{limit:g} and {limit:g}", field=part
            )
        out[part] = float(value)
    for part in ("name", "address"):
        value = location.get(part)
        if value is not None:
            where = f"location.{part}"
            if not isinstance(value, str):
                raise InvalidInput(f"{where} must be text", field=where)
            checked_characters(value, field=where, what="a place's " + part, limit=MAX_PLACE_TEXT)
            out[part] = value
    return out


def _form(response: Any) -> dict[str, Any]:
    size = len(json.dumps(response, ensure_ascii=False))
    if size > MAX_FORM_JSON:
        raise InvalidInput(
            f"flowResponse: at most {MAX_FORM_JSON} characters of JSON, not {size}", field="flowResponse"
        )
    fields, why = read_form_answer(response)
    if why is not None:
        raise InvalidInput(f"flowResponse: {why}", field="flowResponse")
    return {"name": "flow", "body": "Sent", "response": fields, "error": None}


def _reaction(reaction: dict[str, Any]) -> dict[str, Any]:
    message_id = reaction.get("message_id")
    emoji = reaction.get("emoji") or ""
    if not isinstance(message_id, str) or not message_id.strip() or not isinstance(emoji, str):
        raise InvalidInput("a reaction names the message (messageId) and an emoji", field="reaction")
    checked_characters(message_id, field="reaction.messageId", what="a message id", limit=MAX_BUTTON_ID)
    if emoji:
        checked_characters(emoji, field="reaction.emoji", what="an emoji", limit=MAX_EMOJI)
    return {"message_id": message_id, "emoji": emoji}
