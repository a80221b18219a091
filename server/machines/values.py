"""Typed contact variables: turn what a customer types (or an API sends) into the stored value.

Pure functions. Customers answer on WhatsApp in free text, so each type accepts the spellings
a person would use ("3,5", "Sí", "24/12/2026", "  azul ") and refuses the rest with a message
that says what was expected, so a flow can re-ask or an API caller can fix the request.
"""

from __future__ import annotations

import math
import re
import unicodedata
from datetime import UTC, date, datetime

from server.errors import InvalidInput

FIELD_TYPES = ("TEXT", "NUMBER", "BOOLEAN", "DATE", "FIXED")
MAX_TEXT = 4096
# NUMBER's range: integers MongoDB stores (int64) and decimals that are finite IEEE-754 doubles
# (magnitude below ~1.8e308, 15-17 significant digits), written in at most MAX_NUMBER_TEXT
# characters (enough for any double written out in full, with grouping). Longer text is refused
# before int()/float() see it: Python refuses int() of over 4,300 digits (issue 15, finding 8).
_INT64 = (-(2**63), 2**63 - 1)
MAX_NUMBER_TEXT = 512
_RANGE = "a number between -2^63 and 2^63-1, or a decimal within ±1.8e308"

_EXPECTED = {
    "TEXT": "text up to 4096 characters",
    "NUMBER": "digits like 42 or 3.5",
    "BOOLEAN": "yes/no, sí/no, true/false or 1/0",
    "DATE": "a date like 2026-12-24 or 24/12/2026, or an ISO date-time",
}
_TRUE = frozenset({"true", "yes", "y", "si", "s", "1", "verdadero", "ok"})
_FALSE = frozenset({"false", "no", "n", "0", "falso"})
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
_GROUPED = re.compile(r"[+-]?\d{1,3}([.,\s]\d{3})+([.,]\d+)?")
_DMY = re.compile(r"(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})")
# Punctuation people add around one-word answers ("¡Sí!", "no.", "ok?").
_EDGE_PUNCTUATION = " \t\r\n.,;:!¡?¿\"'()"


def fold(text: str) -> str:
    """Case- and accent-insensitive key ("Sí " -> "si"), with inner whitespace collapsed."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())


def _fail(field_type: str, raw: object, expected: str | None = None) -> InvalidInput:
    shown = repr(raw[:57] + "..." if isinstance(raw, str) and len(raw) > 60 else raw)
    what = "a FIXED option" if field_type == "FIXED" else f"a {field_type}"
    return InvalidInput(
        f"{shown} is not {what} (expected {expected or _EXPECTED[field_type]})", fieldType=field_type
    )


def coerce_value(field_type: str, options: list[str] | None, raw: object) -> object:
    """The value to store for a field of ``field_type``; ``None`` clears the variable.

    Raises ``InvalidInput`` naming the type and the expected form when ``raw`` does not fit.
    """
    kind = field_type.upper() if isinstance(field_type, str) else field_type
    if kind not in FIELD_TYPES:
        raise InvalidInput(f"unknown field type {field_type!r}; use one of {', '.join(FIELD_TYPES)}")
    if raw is None:
        return None
    if kind == "TEXT":
        return _text(raw)
    if kind == "NUMBER":
        return _number(raw)
    if kind == "BOOLEAN":
        return _boolean(raw)
    if kind == "DATE":
        return _date(raw)
    return _fixed(options or [], raw)


def _text(raw: object) -> str:
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, int | float) and math.isfinite(raw):
        return str(raw)
    if not isinstance(raw, str):
        raise _fail("TEXT", raw)
    value = raw.strip()
    if len(value) > MAX_TEXT:
        raise InvalidInput(
            f"text of {len(value)} characters is too long for a TEXT field (max {MAX_TEXT})", fieldType="TEXT"
        )
    return value


def _number(raw: object) -> int | float:
    if isinstance(raw, bool):
        raise _fail("NUMBER", raw)
    if isinstance(raw, int):
        if not _INT64[0] <= raw <= _INT64[1]:
            raise _fail("NUMBER", raw, _RANGE)
        return raw
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise _fail("NUMBER", raw)
        return raw
    if not isinstance(raw, str):
        raise _fail("NUMBER", raw)
    text = raw.strip()
    if len(text) > MAX_NUMBER_TEXT:
        raise _fail("NUMBER", raw, _RANGE)
    if _GROUPED.fullmatch(text) and not _NUMBER.fullmatch(text.replace(",", ".")):
        text = _ungroup(text)
    else:
        text = text.replace(",", ".")  # Spanish decimal comma: "3,5"
    if not _NUMBER.fullmatch(text):
        raise _fail("NUMBER", raw)
    if "." not in text:
        value = int(text)
        if not _INT64[0] <= value <= _INT64[1]:
            raise _fail("NUMBER", raw, _RANGE)
        return value
    number = float(text)
    if not math.isfinite(number):
        raise _fail("NUMBER", raw, _RANGE)
    return number


def _ungroup(text: str) -> str:
    """Drop thousands separators ("1.234,5", "1,234.5", "1 234", "1.234.567").

    With both "." and "," the last one is the decimal mark; a single mark among space groups
    is decimal too; one kind of mark repeated only groups thousands.
    """
    digits = re.sub(r"\s", "", text)
    marks = [c for c in digits if c in ".,"]
    if len(set(marks)) == 2 or len(marks) == 1:
        last = max(digits.rfind("."), digits.rfind(","))
        return re.sub(r"[.,]", "", digits[:last]) + "." + digits[last + 1 :]
    return re.sub(r"[.,]", "", digits)


def _boolean(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str):
        word = fold(raw).strip(_EDGE_PUNCTUATION)
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise _fail("BOOLEAN", raw)


def _to_utc(moment: datetime) -> datetime:
    """Aware UTC at millisecond precision, as BSON stores it (naive input is taken as UTC)."""
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return aware.replace(microsecond=aware.microsecond // 1000 * 1000)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _date(raw: object) -> datetime:
    if isinstance(raw, datetime):
        return _to_utc(raw)
    if isinstance(raw, date):
        return _midnight(raw)
    if isinstance(raw, dict) and set(raw) == {"$date"}:
        raw = raw["$date"]  # extended JSON, as segments and exports write dates
    if not isinstance(raw, str):
        raise _fail("DATE", raw)
    text = raw.strip()
    dmy = _DMY.fullmatch(text)
    try:
        if dmy:
            day, month, year = (int(g) for g in dmy.groups())
            return _midnight(date(year, month, day))
        if len(text) == 10:
            return _midnight(date.fromisoformat(text))
        if len(text) > 10 and text[4:5] == "-":
            return _to_utc(datetime.fromisoformat(text.replace("z", "Z")))
    except ValueError:
        pass
    raise _fail("DATE", raw)


def _fixed(options: list[str], raw: object) -> str:
    listed = ", ".join(options) if options else "(no options configured)"
    expected = f"one of: {listed}"
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise _fail("FIXED", raw, expected)
    wanted = fold(str(raw))
    for option in options:
        if fold(option) == wanted:
            return option
    bare = wanted.strip(_EDGE_PUNCTUATION)
    for option in options:
        if fold(option).strip(_EDGE_PUNCTUATION) == bare:
            return option
    raise _fail("FIXED", raw, expected)
