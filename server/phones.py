"""Phone numbers: the one parser every input goes through, and E.164, the one spelling stored.

API arguments, import rows, webhook-trigger payloads and the senders WhatsApp reports all pass
``parse_phone``, so one number is one contact however it was written:

- only ASCII digits, the separators people write (spaces, ``-``, ``.``, ``(``, ``)``, ``/``) and
  a leading ``+`` or ``00``. Anything else is refused, not folded: ``+3٤600111222`` (an
  Arabic-Indic four) or full-width digits look like a number to a person but are not what the
  caller's own systems hold, and letters would be read as a keypad (issue 15, finding 7);
- read with ``phonenumbers`` (Google's libphonenumber metadata): an international number, or a
  national one of ``region`` (the workspace's ``default_country``) when one is given;
- the number must be valid for its country, except for numbers WhatsApp itself delivered
  (``from_provider``): Meta knows which numbers exist better than a metadata snapshot does (its
  own ``+1 555`` test numbers, ranges opened after the library's release), and a message it
  delivered is never dropped for that; those need only have a possible length.
"""

from __future__ import annotations

import phonenumbers

from server.errors import InvalidInput

MAX_INPUT = 64  # the longest spelling considered (E.164 has at most 15 digits)
_ALLOWED = frozenset("0123456789+ -.()/\t")
_EXAMPLE = "like +34600111222"


def parse_phone(
    raw: object,
    *,
    field: str = "phone",
    region: str | None = None,
    bare_international: bool = False,
    from_provider: bool = False,
) -> str:
    """``raw`` as E.164, or ``InvalidInput`` naming ``field`` and what is wrong.

    ``region``: the ISO 3166 country a national number belongs to (none: only international
    numbers). ``bare_international``: digits without ``+`` that are not a number of ``region``
    are read as international (how WhatsApp and many shops write them, ``34600111222``).
    """
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidInput(f"{field}: a phone number is required ({_EXAMPLE})", field=field)
    text = raw.strip()
    shown = repr(text if len(text) <= MAX_INPUT else text[:MAX_INPUT] + "...")
    if len(text) > MAX_INPUT:
        raise InvalidInput(f"{field}: {shown} is too long for a phone number", field=field)
    if not set(text) <= _ALLOWED:
        raise InvalidInput(
            f"{field}: {shown} may hold only the ASCII digits 0-9, spaces and + - . ( ) / ({_EXAMPLE})",
            field=field,
        )
    if "+" in text[1:]:
        raise InvalidInput(f"{field}: {shown} has a '+' that does not start it", field=field)
    digits = "".join(c for c in text if c.isdigit())
    if text.startswith("00"):
        text, digits = "+" + digits[2:], digits[2:]
    candidates: list[tuple[str, str | None]]
    if text.startswith("+"):
        candidates = [("+" + digits, None)]
    else:
        candidates = [(digits, region)] if region else []
        if bare_international:
            candidates.append(("+" + digits, None))
    if not candidates:
        raise InvalidInput(
            f"{field}: {shown} is not in E.164 form ({_EXAMPLE}); set the workspace's default country "
            "(setDefaultCountry) to write national numbers",
            field=field,
        )
    for candidate, country in candidates:
        number = _parsed(candidate, country)
        if number is not None and _acceptable(number, from_provider):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    where = f" of {region} or" if region and not text.startswith("+") else ""
    raise InvalidInput(
        f"{field}: {shown} is not a valid phone number{where} in E.164 form ({_EXAMPLE})", field=field
    )


def normalize_phone(raw: str, field: str = "phone") -> str:
    """An international number (``+`` or ``00``) as E.164: ``parse_phone`` without a default country."""
    return parse_phone(raw, field=field)


def _parsed(candidate: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException:
        return None


def _acceptable(number: phonenumbers.PhoneNumber, from_provider: bool) -> bool:
    if from_provider:
        return phonenumbers.is_possible_number(number)
    return phonenumbers.is_valid_number(number)


def country_code(value: str, field: str = "country") -> str:
    """An ISO 3166 alpha-2 code phone numbers can be parsed for, upper-cased."""
    code = value.strip().upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidInput(
            f"{field}: {value!r} is not an ISO 3166 country code like 'ES' or 'MX'", field=field
        )
    return code
