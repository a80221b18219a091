"""A customer's WhatsApp identities: phone number, BSUID and parent BSUID, plus the username shown.

Since 2026 WhatsApp users may adopt a username and withhold their phone number from businesses;
Meta identifies every user to a business by a business-scoped user ID (BSUID, ``US.1349...``),
present in every webhook, and by a parent BSUID (``US.ENT.1181...``) shared by linked business
portfolios when Meta enables it (facts and sources: tests/conformance/whatsapp-bsuid.md).

A contact (``server.ids.ContactKey``) has any of these; each one it has is claimed in the
``identities`` collection so that one identity names one contact of a workspace
(``server.contact_directory``). The username is shown, never looked up: users change it.
Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from server.errors import InvalidInput

PHONE = "phone"
BSUID = "bsuid"
PARENT_BSUID = "parent_bsuid"
KINDS = (BSUID, PHONE, PARENT_BSUID)  # the identities a contact is found by, in lookup order

# A two-letter ISO country code, a period, up to 128 alphanumerics; parent BSUIDs have ``ENT.``.
_BSUID = re.compile(r"[A-Z]{2}\.[A-Za-z0-9]{1,128}")
_PARENT_BSUID = re.compile(r"[A-Z]{2}\.ENT\.[A-Za-z0-9]{1,128}")
MAX_USERNAME = 100
_EXAMPLE = "like US.13491208655302741918"


@dataclass(frozen=True)
class Identities:
    """What a webhook, a send or an API call says about who a customer is (any part may be absent)."""

    phone: str | None = None  # E.164
    bsuid: str | None = None
    parent_bsuid: str | None = None
    username: str | None = None  # display only

    def pairs(self) -> list[tuple[str, str]]:
        """The (kind, value) identities present, in lookup order (the username is not one)."""
        values = {PHONE: self.phone, BSUID: self.bsuid, PARENT_BSUID: self.parent_bsuid}
        return [(kind, value) for kind in KINDS if (value := values[kind])]

    def __bool__(self) -> bool:
        return bool(self.pairs())

    def fields(self) -> dict[str, str]:
        """The contact document fields these set (identities and username present)."""
        values = {
            PHONE: self.phone,
            BSUID: self.bsuid,
            PARENT_BSUID: self.parent_bsuid,
            "username": self.username,
        }
        return {name: value for name, value in values.items() if value}

    @classmethod
    def of_contact(cls, contact: Mapping[str, Any]) -> Identities:
        return cls(
            phone=contact.get(PHONE),
            bsuid=contact.get(BSUID),
            parent_bsuid=contact.get(PARENT_BSUID),
            username=contact.get("username"),
        )


def bsuid_kind(value: str) -> str | None:
    """``bsuid`` or ``parent_bsuid`` when ``value`` has that format, else None."""
    if _PARENT_BSUID.fullmatch(value):
        return PARENT_BSUID
    if _BSUID.fullmatch(value):
        return BSUID
    return None


def parse_bsuid(raw: object, field: str = "bsuid") -> str:
    """A BSUID (not a parent one) as Meta writes it, or ``InvalidInput`` naming ``field``."""
    if not isinstance(raw, str) or bsuid_kind(raw.strip()) != BSUID:
        shown = repr(raw)[:80]
        raise InvalidInput(
            f"{field}: {shown} is not a business-scoped user ID (a country code, a period and up to "
            f"128 letters and digits, {_EXAMPLE})",
            field=field,
        )
    return raw.strip()


def provider_bsuid(raw: object) -> str | None:
    """A BSUID or parent BSUID from Meta, or None when absent or not in Meta's format."""
    if isinstance(raw, str) and bsuid_kind(raw) is not None:
        return raw
    return None


def display_username(raw: object) -> str | None:
    """A username to show (never an identity): trimmed, bounded; None when absent."""
    if not isinstance(raw, str) or not raw.strip():
        return None
    return raw.strip()[:MAX_USERNAME]


def address_of(contact: Mapping[str, Any]) -> dict[str, Any]:
    """Where an outbox message to ``contact`` goes: its phone (``to``) when known, else its BSUID.

    Meta recommends sending to phone numbers where known and takes ``to`` when a request has
    both, so the channel sends ``recipient`` only for a contact without a phone. ``contact_id``
    names the contact on the message records (``ContactKey.referenced_by``).
    """
    return {
        "to": contact.get(PHONE),
        "bsuid": contact.get(BSUID) or contact.get(PARENT_BSUID),
        "contact_id": contact.get("_id"),
    }


def message_address(message: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a stored message keeps about its customer, from an outbox message."""
    found = {
        "phone": message.get("to"),
        "contact_id": message.get("contact_id"),
        "bsuid": message.get("bsuid"),
    }
    return {name: value for name, value in found.items() if value is not None or name == "phone"}
