"""Parse and validate segment documents into a small typed tree shared by both back ends.

The MongoDB compiler (``mongo.py``) and the in-memory evaluator (``evaluate.py``) walk the
same parsed tree, so a segment is checked once and normalised once (durations, ``$date``
values), and the two back ends cannot disagree about what a segment *says*.

Semantics (identical in both back ends, following MongoDB's query rules):
- ``tag``: the contact's ``tags`` list holds that exact (case-sensitive) name.
- ``opted_in: true`` is ``opted_in == true``; ``false`` is anything else, incl. missing.
- ``assigned: true``: ``assigned_agent`` is present and not null; ``assigned_to``: equals the id.
- ``var`` compares ``variables.<name>``. Comparisons only hold within one type class
  (numbers int/float, text, booleans, dates); ``true`` is never the number ``1``. A variable
  holding a list matches when any element matches (one level deep, as MongoDB does).
  ``ne`` is "not eq", so it matches missing variables. ``exists: true`` means present and
  not null (a variable set to ``null`` counts as unset). ``in`` takes a list of values.
  ``contains`` with text is a case-insensitive substring test on a text variable or on any
  text element of a list variable; with a number, boolean or date it is list membership
  (a scalar variable never "contains" anything but text).
- ``last_inbound.within d``: ``last_inbound_at >= now - d``; ``before d`` is
  ``last_inbound_at < now - d`` *or the contact never wrote* (null/missing), so for any contact
  with a date or no date at all ``before`` is exactly ``not within``: "quiet for d".
- ``phone_prefix``: ``phone`` starts with the given ``+digits``.
- ``has_phone: true``: ``phone`` is present and not null (customers who adopted a WhatsApp
  username may share no number: they are reached by BSUID, and only a phone reaches SMS, Klaviyo,
  or authentication templates); ``false`` is missing or null.
- ``all: []`` matches every contact and ``any: []`` none (the identities of and/or).
Dates are compared at millisecond precision, as BSON stores them; naive datetimes are UTC.
A ``{"$date": ...}`` value without an offset is read in the workspace's time zone (``zone``):
``{"$date": "2026-12-24"}`` is midnight in Madrid for a Madrid workspace, the same rule as a
DATE field filled with "24/12/2026" (``server/machines/values.py``), so the two compare equal.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo

from server.durations import parse_duration
from server.errors import InvalidInput

# Where the contact document keeps what each leaf looks at.
FIELD_TAGS = "tags"
FIELD_OPTED_IN = "opted_in"
FIELD_AGENT = "assigned_agent"
FIELD_LAST_INBOUND = "last_inbound_at"
FIELD_PHONE = "phone"
FIELD_VARIABLES = "variables"

OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "contains", "exists")
ORDER_OPERATORS = ("gt", "gte", "lt", "lte")
KINDS = (
    "all",
    "any",
    "not",
    "tag",
    "opted_in",
    "assigned",
    "assigned_to",
    "var",
    "last_inbound",
    "phone_prefix",
    "has_phone",
)
MAX_DEPTH = 32
MAX_IN_VALUES = 1000
MAX_NAME = 100
MAX_DURATION = timedelta(days=36500)
_INT64 = (-(2**63), 2**63 - 1)

Scalar = str | int | float | bool | datetime


@dataclass(frozen=True)
class All:
    parts: tuple[Segment, ...]


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[Segment, ...]


@dataclass(frozen=True)
class Not:
    part: Segment


@dataclass(frozen=True)
class Tag:
    name: str


@dataclass(frozen=True)
class OptedIn:
    value: bool


@dataclass(frozen=True)
class Assigned:
    value: bool


@dataclass(frozen=True)
class AssignedTo:
    agent: str


@dataclass(frozen=True)
class Var:
    """``value`` is a scalar, a tuple of scalars for ``in``, or a bool for ``exists``."""

    name: str
    op: str
    value: Scalar | tuple[Scalar, ...]


@dataclass(frozen=True)
class LastInbound:
    kind: Literal["within", "before"]
    delta: timedelta


@dataclass(frozen=True)
class PhonePrefix:
    prefix: str


@dataclass(frozen=True)
class HasPhone:
    value: bool


Segment = (
    All | AnyOf | Not | Tag | OptedIn | Assigned | AssignedTo | Var | LastInbound | PhonePrefix | HasPhone
)


Zone = str | tzinfo
"""The workspace's time zone (a name such as ``Europe/Madrid`` or a ``tzinfo``)."""


def validate_segment(segment: Any, path: str = "segment") -> None:
    """Raise ``InvalidInput`` naming the first problem and where it is; return quietly if valid."""
    parse_segment(segment, path)


def as_zone(zone: Zone) -> tzinfo:
    return ZoneInfo(zone) if isinstance(zone, str) else zone


def parse_segment(segment: Any, path: str = "segment", zone: Zone = UTC) -> Segment:
    """Validate a segment document (or pass through an already parsed one) into the typed tree.

    ``zone``: where ``$date`` values without an offset are read (midnight there for a bare day).
    """
    if isinstance(
        segment,
        All
        | AnyOf
        | Not
        | Tag
        | OptedIn
        | Assigned
        | AssignedTo
        | Var
        | LastInbound
        | PhonePrefix
        | HasPhone,
    ):
        return segment
    return _parse(segment, path, 0, as_zone(zone))


def cutoff(now: datetime, delta: timedelta) -> datetime:
    """``now - delta`` as the store will see it: UTC, truncated to whole milliseconds."""
    moment = as_utc(now) - delta
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def as_utc(moment: datetime) -> datetime:
    """Naive datetimes are UTC (that is how pymongo encodes and decodes them)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def regex_literal(text: str) -> str:
    r"""Escape text for a regex that PCRE (mongod) and Python ``re`` (other stores) read alike.

    ASCII punctuation, spaces and control characters become ``\xhh``, which both dialects
    read as that character; letters and digits and non-ASCII characters stay literal. This
    avoids ``re.escape`` forms such as backslash-newline whose meaning differs by dialect.
    """
    return "".join(ch if ch.isalnum() or ord(ch) > 0x7F else f"\\x{ord(ch):02x}" for ch in text)


def _fail(path: str, problem: str) -> InvalidInput:
    return InvalidInput(f"{path}: {problem}", path=path)


def _parse(node: Any, path: str, depth: int, zone: tzinfo) -> Segment:
    if depth > MAX_DEPTH:
        raise _fail(path, f"segments nest more than {MAX_DEPTH} levels deep")
    if not isinstance(node, dict):
        raise _fail(path, f'a segment is an object such as {{"tag": "vip"}}, not {_kind(node)}')
    keys = [k for k in node if k in KINDS]
    if not keys:
        unknown = next(iter(node), None)
        if unknown is None:
            raise _fail(path, f"empty segment; use one of {', '.join(KINDS)}")
        raise _fail(path, f"{unknown!r} is not a segment; use one of {', '.join(KINDS)}")
    if len(keys) > 1:
        names = ", ".join(repr(k) for k in keys)
        raise _fail(path, f'a segment has exactly one of {names}; combine them with {{"all": [...]}}')
    kind = keys[0]
    allowed = {"var", "op", "value"} if kind == "var" else {kind}
    extra = [k for k in node if k not in allowed]
    if extra:
        raise _fail(f"{path}.{extra[0]}", f"unexpected key in a {kind!r} segment")
    value = node[kind]
    here = f"{path}.{kind}"
    if kind in ("all", "any"):
        if not isinstance(value, list):
            raise _fail(here, f"{kind!r} takes a list of segments, not {_kind(value)}")
        parts = tuple(_parse(part, f"{here}[{i}]", depth + 1, zone) for i, part in enumerate(value))
        return All(parts) if kind == "all" else AnyOf(parts)
    if kind == "not":
        if isinstance(value, list):
            raise _fail(here, "'not' takes one segment; wrap several in {\"any\": [...]}")
        return Not(_parse(value, here, depth + 1, zone))
    if kind == "tag":
        return Tag(_name(value, here, "a tag name"))
    if kind == "assigned_to":
        return AssignedTo(_name(value, here, "an agent id"))
    if kind in ("opted_in", "assigned", "has_phone"):
        if not isinstance(value, bool):
            raise _fail(here, f"{kind!r} takes true or false, not {_kind(value)}")
        flags: dict[str, Callable[[bool], Segment]] = {
            "opted_in": OptedIn,
            "assigned": Assigned,
            "has_phone": HasPhone,
        }
        return flags[kind](value)
    if kind == "last_inbound":
        return _last_inbound(value, here)
    if kind == "phone_prefix":
        if (
            not isinstance(value, str)
            or not value.startswith("+")
            or not value[1:].isdecimal()
            or not value[1:].isascii()
            or len(value) > 16
        ):
            raise _fail(here, f"{value!r} is not a phone prefix; use '+' and digits, e.g. '+34'")
        return PhonePrefix(value)
    return _var(node, path, zone)


def _var(node: dict[str, Any], path: str, zone: tzinfo) -> Var:
    name = node["var"]
    if not isinstance(name, str) or not name:
        raise _fail(f"{path}.var", f"'var' takes a variable name, not {_kind(name)}")
    if "." in name or name.startswith("$") or "\x00" in name or len(name) > MAX_NAME:
        raise _fail(
            f"{path}.var",
            f"{name!r} is not a variable name (no '.', no leading '$', at most {MAX_NAME} characters)",
        )
    op = node.get("op")
    if op not in OPERATORS:
        shown = f"{op!r} is not an operator" if op is not None else "missing operator"
        raise _fail(f"{path}.op", f"{shown}; use one of {', '.join(OPERATORS)}")
    here = f"{path}.value"
    if op == "exists":
        value = node.get("value", True)
        if not isinstance(value, bool):
            raise _fail(here, f"'exists' takes true or false, not {_kind(value)}")
        return Var(name, op, value)
    if "value" not in node:
        raise _fail(here, f"{op!r} needs a value")
    raw = node["value"]
    if op == "in":
        if not isinstance(raw, list):
            raise _fail(here, f"'in' takes a list of values, not {_kind(raw)}")
        if len(raw) > MAX_IN_VALUES:
            raise _fail(here, f"'in' takes at most {MAX_IN_VALUES} values")
        return Var(name, op, tuple(_scalar(v, f"{here}[{i}]", op, zone) for i, v in enumerate(raw)))
    value = _scalar(raw, here, op, zone)
    if op in ORDER_OPERATORS and isinstance(value, bool):
        raise _fail(here, f"{op!r} compares numbers, text or dates, not true/false; use 'eq'")
    if op == "contains" and value == "":
        raise _fail(here, "'contains' needs non-empty text")
    return Var(name, op, value)


def _scalar(raw: Any, path: str, op: str, zone: tzinfo) -> Scalar:
    """One comparable value: text, number, boolean, a datetime or ``{"$date": "<ISO-8601>"}``."""
    if isinstance(raw, dict) and set(raw) == {"$date"}:
        moment = _iso_moment(raw["$date"], zone)
        if moment is None:
            raise _fail(path, f"{raw['$date']!r} is not an ISO-8601 date such as '2025-01-31T09:00:00Z'")
        return moment
    if isinstance(raw, datetime):
        return as_utc(raw)
    if isinstance(raw, bool | str):
        return raw
    if isinstance(raw, int):
        if not _INT64[0] <= raw <= _INT64[1]:
            raise _fail(path, f"{raw} does not fit a 64-bit integer")
        return raw
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise _fail(path, f"{raw} is not a finite number")
        return raw
    if raw is None:
        hint = "use op 'exists' with false" if op in ("eq", "in") else "use op 'exists'"
        raise _fail(path, f"null is not a value to compare with; {hint}")
    if isinstance(raw, list):
        raise _fail(path, f"{op!r} takes a single value, not a list; use 'in' for several")
    raise _fail(
        path,
        f"{_kind(raw)} is not a value to compare with; use text, a number, true/false "
        'or {"$date": "<ISO-8601>"}',
    )


def _iso_moment(text: Any, zone: tzinfo) -> datetime | None:
    """An ISO-8601 day or moment as aware UTC; without an offset it is read in ``zone``."""
    if not isinstance(text, str):
        return None
    try:
        if len(text.strip()) == 10:  # a day alone: its midnight in the workspace's zone
            moment = datetime.combine(date.fromisoformat(text.strip()), time())
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


def _last_inbound(value: Any, path: str) -> LastInbound:
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in ("within", "before"):
        raise _fail(path, '\'last_inbound\' takes {"within": "24h"} or {"before": "7d"}')
    kind, text = next(iter(value.items()))
    where = f"{path}.{kind}"
    if not isinstance(text, str):
        raise _fail(where, f"a duration is text such as '24h', not {_kind(text)}")
    try:
        delta = parse_duration(text)
    except (ValueError, OverflowError) as exc:
        raise _fail(where, str(exc)) from None
    if delta > MAX_DURATION:
        raise _fail(where, f"{text!r} is longer than {MAX_DURATION.days} days")
    return LastInbound(kind, delta)


def _name(value: Any, path: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, f"expected {what}, not {_kind(value)}")
    if len(value) > MAX_NAME:
        raise _fail(path, f"{what} has at most {MAX_NAME} characters")
    return value


def _kind(value: Any) -> str:
    """How a JSON-ish value reads in an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "empty text" if not value.strip() else f"text {value!r}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
