"""Typed contact variables: turn what a customer types (or an API sends) into the stored value.

Pure functions. Customers answer on WhatsApp in free text, so each type accepts the spellings
a person would use ("3,5", "Sí", "24/12/2026", "  azul ") and refuses the rest with a message
that says what was expected, so a flow can re-ask or an API caller can fix the request.

Dates and numbers are read in the workspace's ``Regional`` settings when given: "24/12/2026" is
day-first where the locale is, midnight in the workspace's time zone; "1.234" is 1234 where "."
groups thousands. Without them: UTC, day-first, and a lone mark is a decimal one.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from datetime import UTC, date, datetime, time, tzinfo

from server.errors import InvalidInput
from server.machines.regional import Regional

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
}
_DATE_EXAMPLES = {"DMY": "24/12/2026", "MDY": "12/24/2026", "YMD": "2026/12/24"}
_TRUE = frozenset({"true", "yes", "y", "si", "s", "1", "verdadero", "ok"})
_FALSE = frozenset({"false", "no", "n", "0", "falso"})
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
_GROUPED = re.compile(r"[+-]?\d{1,3}([.,\s]\d{3})+([.,]\d+)?")
_LONE_MARK = re.compile(r"[+-]?\d{1,3}([.,])\d{3}")
# "12,50 €", "$ 10", "10 EUR": the currency is not part of the number.
_CURRENCY = re.compile(r"^(?:[€$£]\s*)?(?P<n>.*?)(?:\s*(?:[€$£]|eur|usd))?$", re.IGNORECASE)
_NUMERIC_DATE = re.compile(
    r"(\d{1,4})[/.-](\d{1,2})[/.-](\d{1,4})"
    r"(?:(?:\s*,\s*|\s+|t)(\d{1,2})[:h.](\d{2})(?::(\d{2}))?\s*(am|pm|a\.\s?m\.|p\.\s?m\.)?)?"
)
_WORDS = re.compile(r"\d+|[^\W\d_]+")
# Words people put between a day, a month name and a year ("24 de diciembre de 2026", "24th of May").
_FILLERS = frozenset({"de", "del", "of", "the", "el", "le", "du", "di", "em", "st", "nd", "rd", "th"})
# Punctuation people add around one-word answers ("¡Sí!", "no.", "ok?").
_EDGE_PUNCTUATION = " \t\r\n.,;:!¡?¿\"'()"


def fold(text: str) -> str:
    """Case- and accent-insensitive key ("Sí " -> "si"), with inner whitespace collapsed."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())


def expected_date(regional: Regional | None) -> str:
    """How a date may be written, with the example in the locale's own order."""
    example = _DATE_EXAMPLES[regional.date_order if regional else "DMY"]
    return f"a date like {example} or 2026-12-24, or an ISO date-time"


def _fail(field_type: str, raw: object, expected: str | None = None) -> InvalidInput:
    shown = repr(raw[:57] + "..." if isinstance(raw, str) and len(raw) > 60 else raw)
    what = "a FIXED option" if field_type == "FIXED" else f"a {field_type}"
    wanted = expected or _EXPECTED.get(field_type) or expected_date(None)
    return InvalidInput(f"{shown} is not {what} (expected {wanted})", fieldType=field_type)


def coerce_value(
    field_type: str, options: list[str] | None, raw: object, regional: Regional | None = None
) -> object:
    """The value to store for a field of ``field_type``; ``None`` clears the variable.

    ``regional``: the workspace's time zone and locale, which dates and numbers are read in.
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
        return _number(raw, regional)
    if kind == "BOOLEAN":
        return _boolean(raw)
    if kind == "DATE":
        return _date(raw, regional)
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


def _number(raw: object, regional: Regional | None = None) -> int | float:
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
    currency = _CURRENCY.fullmatch(text)
    text = currency.group("n") if currency else text
    lone = _LONE_MARK.fullmatch(text)
    if lone and regional is not None and lone.group(1) == regional.group_mark != regional.decimal_mark:
        text = text.replace(lone.group(1), "")  # "1.234" where "." groups thousands (es-ES)
    elif _GROUPED.fullmatch(text) and not _NUMBER.fullmatch(text.replace(",", ".")):
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


def _to_utc(moment: datetime, zone: tzinfo = UTC) -> datetime:
    """Aware UTC at millisecond precision, as BSON stores it (naive input is taken in ``zone``)."""
    aware = moment.replace(tzinfo=zone) if moment.tzinfo is None else moment
    aware = aware.astimezone(UTC)
    return aware.replace(microsecond=aware.microsecond // 1000 * 1000)


def _date(raw: object, regional: Regional | None = None) -> datetime:
    """A moment: a day alone is its midnight in the workspace's zone (UTC without one).

    Naive ``datetime`` objects are stored values (BSON, UTC); naive text is local time.
    """
    zone = regional.zone if regional is not None else UTC
    if isinstance(raw, datetime):
        return _to_utc(raw)
    if isinstance(raw, date):
        return _to_utc(datetime.combine(raw, time()), zone)
    if isinstance(raw, dict) and set(raw) == {"$date"}:
        raw = raw["$date"]  # extended JSON, as segments and exports write dates
    if not isinstance(raw, str):
        raise _fail("DATE", raw, expected_date(regional))
    text = raw.strip()
    try:
        if len(text) == 10 and text[4:5] == "-":
            return _to_utc(datetime.combine(date.fromisoformat(text), time()), zone)
        if len(text) > 10 and text[4:5] == "-":
            return _to_utc(datetime.fromisoformat(text.replace("z", "Z")), zone)
    except ValueError:
        pass
    local = _numeric_date(fold(text), regional) or _named_date(fold(text), regional)
    if local is None:
        raise _fail("DATE", raw, expected_date(regional))
    return _to_utc(local, zone)


def _numeric_date(text: str, regional: Regional | None) -> datetime | None:
    """ "24/12/2026", "12/24/2026 10:30 pm", "2026/12/24", "24.12.26": in the locale's order.

    A day-month order that cannot be a date ("12/24/2026" in es-ES) is read the other way round;
    a two-digit year is 19xx from 69 on, else 20xx (as POSIX ``%y``).
    """
    found = _NUMERIC_DATE.fullmatch(text)
    if found is None:
        return None
    first, second, third = found.group(1), found.group(2), found.group(3)
    if len(first) == 4 and len(third) <= 2:
        candidates = [(int(first), int(second), int(third))]
    elif len(third) in (2, 4) and len(first) <= 2:
        year = int(third) + (0 if len(third) == 4 else 1900 if int(third) >= 69 else 2000)
        day_first = (year, int(second), int(first))
        month_first = (year, int(first), int(second))
        order = regional.date_order if regional is not None else "DMY"
        candidates = [month_first, day_first] if order == "MDY" else [day_first, month_first]
    else:
        return None
    clock = _time_of_day(found)
    if clock is None:
        return None
    for year, month, day in candidates:
        try:
            return datetime.combine(date(year, month, day), clock)
        except ValueError:
            continue
    return None


def _time_of_day(found: re.Match[str]) -> time | None:
    if found.group(4) is None:
        return time()
    hour, minute, second = int(found.group(4)), int(found.group(5)), int(found.group(6) or 0)
    meridiem = (found.group(7) or "").replace(".", "").replace(" ", "")
    if meridiem:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if meridiem == "pm" else 0)
    try:
        return time(hour, minute, second)
    except ValueError:
        return None


def _named_date(text: str, regional: Regional | None) -> datetime | None:
    """ "24 de diciembre de 2026", "December 24, 2026", "24 dic 2026": a month by name, a day, a
    four-digit year (the locale's month names and English ones)."""
    months = _month_numbers(regional or Regional())
    month: int | None = None
    numbers: list[str] = []
    for word in _WORDS.findall(text):
        if word.isdigit():
            numbers.append(word)
        elif word in months and month is None:
            month = months[word]
        elif word not in _FILLERS:
            return None
    years = [n for n in numbers if len(n) == 4]
    days = [n for n in numbers if len(n) <= 2]
    if month is None or len(numbers) != 2 or len(years) != 1 or len(days) != 1:
        return None
    try:
        return datetime(int(years[0]), month, int(days[0]))
    except ValueError:
        return None


@functools.lru_cache(maxsize=256)
def _month_numbers(regional: Regional) -> dict[str, int]:
    """Folded month names ("diciembre", "dic", "december") -> month number."""
    return {fold(name).strip("."): number for name, number in regional.month_names() if name.strip(".")}


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
