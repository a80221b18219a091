"""WhatsApp users as Meta reports them since 2026, and the webhooks the platform sends about them.

A ``WhatsAppUser`` always has a BSUID; their phone number is in webhooks only while they share it
(no username, or still in Meta's contact book). The builders start from the fixtures in
``tests/fixtures/whatsapp_webhooks`` (each citing its Meta reference page) and fill in the user:
incoming texts and button taps, statuses of what the Graph API fake accepted, changed numbers and
BSUIDs. Facts: tests/conformance/whatsapp-bsuid.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tests.support.graph_api_fake import Received
from tests.support.whatsapp_webhooks import payload, value_of


def new_bsuid(country: str = "US") -> str:
    """A BSUID in Meta's format: country code, period, alphanumerics (``US.13491208655302741918``)."""
    return f"{country}.{int.from_bytes(os.urandom(9), 'big'):020d}"


@dataclass
class WhatsAppUser:
    bsuid: str
    phone: str | None = None  # E.164; None while the user withholds it (username adopted)
    username: str | None = None
    name: str = "Sheena Nelson"
    parent_bsuid: str | None = None

    @property
    def wa_id(self) -> str | None:
        return self.phone.lstrip("+") if self.phone else None

    def contact_entry(self) -> dict[str, Any]:
        """The user as an incoming message's (or a status's) ``contacts[]`` names them."""
        profile: dict[str, Any] = {"name": self.name}
        if self.username:
            profile["username"] = self.username
        entry: dict[str, Any] = {"profile": profile, "user_id": self.bsuid}
        if self.wa_id:
            entry["wa_id"] = self.wa_id
        if self.parent_bsuid:
            entry["parent_user_id"] = self.parent_bsuid
        return entry

    def sender_fields(self) -> dict[str, Any]:
        """How a message names its sender: ``from`` when the number is shared, ``from_user_id`` always."""
        fields: dict[str, Any] = {"from_user_id": self.bsuid}
        if self.wa_id:
            fields["from"] = self.wa_id
        if self.parent_bsuid:
            fields["from_parent_user_id"] = self.parent_bsuid
        return fields


def _wamid() -> str:
    return "wamid." + os.urandom(18).hex().upper()


def _seconds(at: datetime | None) -> str:
    return str(int((at or datetime.now(UTC)).timestamp()))


def message_from(
    user: WhatsAppUser,
    *,
    text: str | None = None,
    button: tuple[str, str] | None = None,
    wamid: str | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """An incoming text (or a reply-button tap: ``(id, title)``) from ``user``."""
    body = payload("interactive_button_reply_username_only" if button else "text_username_only")
    value = value_of(body)
    value["contacts"] = [user.contact_entry()]
    message = value["messages"][0]
    for name in ("from", "from_user_id", "from_parent_user_id"):
        message.pop(name, None)
    message.update(user.sender_fields())
    message["id"] = wamid or _wamid()
    message["timestamp"] = _seconds(at)
    if button is not None:
        message["interactive"]["button_reply"] = {"id": button[0], "title": button[1]}
    else:
        message["text"] = {"body": text or ""}
    return body


def status_of(
    user: WhatsAppUser, sent: Received, status: str = "delivered", at: datetime | None = None
) -> dict[str, Any]:
    """The status webhook of a message the fake accepted for ``user`` (by phone or by BSUID)."""
    body = payload("status_delivered_bsuid")
    value = value_of(body)
    to_phone = bool((sent.body or {}).get("to"))
    report = value["statuses"][0]
    report.update(
        id=sent.answer["messages"][0]["id"],
        status=status,
        timestamp=_seconds(at),
        recipient_id=user.wa_id if to_phone else user.bsuid,
        recipient_user_id=user.bsuid,
    )
    if status == "failed":
        value.pop("contacts", None)  # failed statuses have no contacts array
    else:
        value["contacts"] = [user.contact_entry()]  # wa_id only while the number is shared
    return body


def number_changed(user: WhatsAppUser, new_phone: str, at: datetime | None = None) -> dict[str, Any]:
    """The ``user_changed_number`` system message (the new number in ``system.wa_id``)."""
    assert user.wa_id is not None, "a number change is reported for a number that was shared"
    body = payload("system_user_changed_number")
    message = value_of(body)["messages"][0]
    digits = new_phone.lstrip("+")
    message.update(id=_wamid(), timestamp=_seconds(at), **{"from": user.wa_id})
    message["system"].update(wa_id=digits, body=f"User {user.name} changed from {user.wa_id} to {digits}")
    return body


def bsuid_changed_message(user: WhatsAppUser, new_bsuid: str, at: datetime | None = None) -> dict[str, Any]:
    """The ``user_changed_user_id`` system message (no phone number; the new BSUID in ``system``)."""
    body = payload("system_user_changed_user_id")
    message = value_of(body)["messages"][0]
    message.update(id=_wamid(), timestamp=_seconds(at), from_user_id=user.bsuid)
    message["system"]["user_id"] = new_bsuid
    return body


def bsuid_changed(user: WhatsAppUser, new_bsuid: str, at: datetime | None = None) -> dict[str, Any]:
    """The ``user_id_update`` webhook: the user's BSUID changed (``wa_id`` when shared)."""
    body = payload("user_id_update")
    entry = value_of(body)["user_id_update"][0]
    entry["user_id"] = {"previous": user.bsuid, "current": new_bsuid}
    entry["timestamp"] = _seconds(at)
    if user.wa_id:
        entry["wa_id"] = user.wa_id
    else:
        entry.pop("wa_id", None)
    return body
