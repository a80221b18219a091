"""E.164 phone numbers: the one spelling of a contact's address everywhere in the product."""

from __future__ import annotations

import re

from server.errors import InvalidInput

_SEPARATORS = re.compile(r"[\s\-().]")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def normalize_phone(raw: str, field: str = "phone") -> str:
    """Return ``raw`` as E.164 (``+`` and 7-15 digits) or raise naming the field."""
    text = _SEPARATORS.sub("", raw or "")
    if text.startswith("00"):
        text = "+" + text[2:]
    if not _E164.match(text):
        raise InvalidInput(
            f"{field}: {raw!r} is not a phone number in E.164 form (like +34600111222)",
            field=field,
        )
    return text
