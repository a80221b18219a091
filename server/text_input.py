"""Names and texts tenants give: one set of length limits and one rule for invisible characters.

Every operation that stores a name or a message text passes it here, so the limits are the same
whichever edge it came through and a refusal is ``INVALID_INPUT`` naming the field (issue 15,
finding 10: 200,000-character flow names, NUL in tag names). Lengths count characters after
trimming; a name's inner whitespace collapses to single spaces.

Refused everywhere: control characters (Unicode ``Cc``: NUL, escape, DEL, the C1 block), with
line breaks and tabs allowed in message texts only, and lone surrogates (which no store can
encode). Refused in names: the bidirectional overrides and isolates (U+202A-U+202E,
U+2066-U+2069), which make a name display as something else. Emoji joiners and other format
characters stay allowed.
"""

from __future__ import annotations

import unicodedata

from server.errors import InvalidInput

# Longest names, in characters (templates: Meta's own limit; tags and fields: what segments and
# {{contact.<field>}} placeholders carry comfortably).
MAX_FLOW_NAME = 200
MAX_AGENT_NAME = 120
MAX_TEAM_NAME = 64
MAX_TAG_NAME = 64
MAX_FIELD_NAME = 64
MAX_OPTION = 100
MAX_TEMPLATE_NAME = 512
MAX_BROADCAST_NAME = 512  # a broadcast is named after its template by default
MAX_EMAIL = 254  # RFC 5321's longest forward path
MAX_MESSAGE_TEXT = 4096  # WhatsApp's longest text message body
MAX_BUTTON_ID = 256  # WhatsApp's longest reply button id

_TEXT_ALLOWED = frozenset("\t\n\r")
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def checked_name(value: object, *, field: str, limit: int, what: str = "a name") -> str:
    """``value`` trimmed with single spaces, or ``InvalidInput`` naming ``field``."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{field}: {what} is required", field=field)
    _refuse_invisible(value, field, what, allowed=frozenset(), bidi=True)
    name = " ".join(value.split())
    if len(name) > limit:
        raise InvalidInput(f"{field}: at most {limit} characters for {what}, not {len(name)}", field=field)
    return name


def checked_text(value: object, *, field: str, limit: int = MAX_MESSAGE_TEXT, what: str = "a text") -> str:
    """A message text (line breaks and tabs kept, trimmed), or ``InvalidInput`` naming ``field``."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{field}: {what} is required", field=field)
    _refuse_invisible(value, field, what, allowed=_TEXT_ALLOWED, bidi=False)
    text = value.strip()
    if len(text) > limit:
        raise InvalidInput(f"{field}: at most {limit} characters for {what}, not {len(text)}", field=field)
    return text


def checked_characters(value: str, *, field: str, what: str = "a text", limit: int | None = None) -> str:
    """``value`` unchanged (as typed) when it holds no control character but line breaks and tabs."""
    _refuse_invisible(value, field, what, allowed=_TEXT_ALLOWED, bidi=False)
    if limit is not None and len(value) > limit:
        raise InvalidInput(f"{field}: at most {limit} characters for {what}, not {len(value)}", field=field)
    return value


def _refuse_invisible(value: str, field: str, what: str, allowed: frozenset[str], bidi: bool) -> None:
    for position, char in enumerate(value):
        if char in allowed:
            continue
        category = unicodedata.category(char)
        if category in ("Cc", "Cs") or (bidi and char in _BIDI_CONTROLS):
            kind = "a control character" if category == "Cc" else "an invisible formatting character"
            if category == "Cs":
                kind = "an unpaired surrogate"
            raise InvalidInput(
                f"{field}: {what} may not hold {kind} (U+{ord(char):04X}, at position {position + 1})",
                field=field,
            )
