"""Evaluate a segment on one contact document in memory, with MongoDB's matching rules.

Each leaf mirrors the exact filter ``mongo.py`` emits for it: the same type classes (bool is
not a number), the same "any element of a list" rule, the same treatment of null and missing
fields, and dates compared as BSON milliseconds. Condition nodes use this on the contact an
actor holds; broadcasts and queries use the filter; both must select the same contacts.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from server.segments.language import (
    FIELD_AGENT,
    FIELD_LAST_INBOUND,
    FIELD_OPTED_IN,
    FIELD_PHONE,
    FIELD_TAGS,
    FIELD_VARIABLES,
    All,
    AnyOf,
    Assigned,
    AssignedTo,
    HasPhone,
    LastInbound,
    Not,
    OptedIn,
    PhonePrefix,
    Segment,
    Tag,
    Var,
    Zone,
    cutoff,
    parse_segment,
    regex_literal,
)


class _Missing:
    """A field the document does not have (MongoDB tells it apart from null only for $exists)."""


MISSING = _Missing()


def matches(segment: Any, contact: Mapping[str, Any], now: datetime, zone: Zone = UTC) -> bool:
    """Whether the contact is in the segment at ``now`` (same answer as the Mongo filter).

    ``zone``: the workspace's time zone, where ``$date`` values without an offset are read.
    """
    return _eval(parse_segment(segment, zone=zone), contact, now)


def _eval(node: Segment, doc: Mapping[str, Any], now: datetime) -> bool:
    if isinstance(node, All):
        return all(_eval(p, doc, now) for p in node.parts)
    if isinstance(node, AnyOf):
        return any(_eval(p, doc, now) for p in node.parts)
    if isinstance(node, Not):
        return not _eval(node.part, doc, now)
    if isinstance(node, Tag):
        return _eq(doc.get(FIELD_TAGS, MISSING), node.name)
    if isinstance(node, OptedIn):
        return _eq(doc.get(FIELD_OPTED_IN, MISSING), True) == node.value
    if isinstance(node, Assigned):
        return _eq(doc.get(FIELD_AGENT, MISSING), None) != node.value
    if isinstance(node, AssignedTo):
        return _eq(doc.get(FIELD_AGENT, MISSING), node.agent)
    if isinstance(node, PhonePrefix):
        return any(
            isinstance(c, str) and c.startswith(node.prefix)
            for c in _candidates(doc.get(FIELD_PHONE, MISSING))
        )
    if isinstance(node, HasPhone):
        return _eq(doc.get(FIELD_PHONE, MISSING), None) != node.value
    if isinstance(node, LastInbound):
        value = doc.get(FIELD_LAST_INBOUND, MISSING)
        moment = cutoff(now, node.delta)
        if node.kind == "within":
            return _compare(value, "gte", moment)
        return _compare(value, "lt", moment) or _eq(value, None)
    return _var(node, doc)


def _var(node: Var, doc: Mapping[str, Any]) -> bool:
    variables = doc.get(FIELD_VARIABLES, MISSING)
    value = variables.get(node.name, MISSING) if isinstance(variables, dict) else MISSING
    op, wanted = node.op, node.value
    if op == "exists":
        return _eq(value, None) != wanted
    if op == "eq":
        return _eq(value, wanted)
    if op == "ne":
        return not _eq(value, wanted)
    if op == "in":
        return any(_eq(value, w) for w in wanted)  # type: ignore[union-attr]
    if op == "contains":
        if isinstance(wanted, str):
            pattern = re.compile(regex_literal(wanted), re.IGNORECASE)
            return any(isinstance(c, str) and pattern.search(c) is not None for c in _candidates(value))
        return isinstance(value, list) and _eq(value, wanted)
    return _compare(value, op, wanted)


def _candidates(value: Any) -> list[Any]:
    """What a leaf test looks at: the value itself and, for a list, its elements (one level)."""
    if value is MISSING:
        return []
    return [value, *value] if isinstance(value, list) else [value]


def _eq(value: Any, wanted: Any) -> bool:
    """MongoDB ``{field: {$eq: wanted}}`` for a non-list ``wanted``; null also matches missing."""
    if wanted is None:
        return value is MISSING or any(c is None for c in _candidates(value))
    return any(_same_class(c, wanted) and _key(c) == _key(wanted) for c in _candidates(value))


def _compare(value: Any, op: str, wanted: Any) -> bool:
    """MongoDB ``$gt/$gte/$lt/$lte``: only values of the query value's type class take part."""
    for c in _candidates(value):
        if not _same_class(c, wanted):
            continue
        left, right = _key(c), _key(wanted)
        if (
            (op == "gt" and left > right)
            or (op == "gte" and left >= right)
            or (op == "lt" and left < right)
            or (op == "lte" and left <= right)
        ):
            return True
    return False


def _type_class(value: Any) -> str | None:
    """BSON comparison class; ``bool`` is checked before ``int`` because Python calls it an int."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, datetime):
        return "date"
    return None


def _same_class(value: Any, wanted: Any) -> bool:
    kind = _type_class(value)
    return kind is not None and kind == _type_class(wanted)


def _key(value: Any) -> Any:
    """Datetimes as BSON milliseconds (naive means UTC), the way pymongo encodes them."""
    if isinstance(value, datetime):
        if value.utcoffset() is not None:
            value = value - value.utcoffset()  # type: ignore[operator]
        return calendar.timegm(value.timetuple()) * 1000 + value.microsecond // 1000
    return value
