"""Compile a segment into a MongoDB filter over contact documents.

Only plain, widely implemented operators are used ($eq $ne $gt.. $in $regex $type $and $or
$nor), each in the form whose meaning mongod and SecantusDB agree on; ``evaluate.py`` mirrors
these exact forms. The filter does not scope by workspace: callers ``$and`` it with their own.
"""

from __future__ import annotations

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

Filter = dict[str, Any]
MATCH_NONE: Filter = {"_id": {"$in": []}}
"""``$or: []`` is an error in MongoDB, so "no contact" is an empty ``$in`` on ``_id``."""

_ORDER = {"gt": "$gt", "gte": "$gte", "lt": "$lt", "lte": "$lte"}


def to_mongo_filter(segment: Any, now: datetime, zone: Zone = UTC) -> Filter:
    """A filter selecting exactly the contacts for which ``matches(segment, contact, now, zone)`` holds.

    ``zone``: the workspace's time zone, where ``$date`` values without an offset are read.
    """
    return _compile(parse_segment(segment, zone=zone), now)


def _compile(node: Segment, now: datetime) -> Filter:
    if isinstance(node, All):
        parts = [_compile(p, now) for p in node.parts]
        return {} if not parts else parts[0] if len(parts) == 1 else {"$and": parts}
    if isinstance(node, AnyOf):
        parts = [_compile(p, now) for p in node.parts]
        return MATCH_NONE if not parts else parts[0] if len(parts) == 1 else {"$or": parts}
    if isinstance(node, Not):
        return {"$nor": [_compile(node.part, now)]}
    if isinstance(node, Tag):
        return {FIELD_TAGS: {"$eq": node.name}}
    if isinstance(node, OptedIn):
        return {FIELD_OPTED_IN: {"$eq" if node.value else "$ne": True}}
    if isinstance(node, Assigned):
        return {FIELD_AGENT: {"$ne" if node.value else "$eq": None}}
    if isinstance(node, AssignedTo):
        return {FIELD_AGENT: {"$eq": node.agent}}
    if isinstance(node, PhonePrefix):
        return {FIELD_PHONE: {"$regex": "^" + regex_literal(node.prefix)}}
    if isinstance(node, HasPhone):
        return {FIELD_PHONE: {"$ne" if node.value else "$eq": None}}
    if isinstance(node, LastInbound):
        moment = cutoff(now, node.delta)
        if node.kind == "within":
            return {FIELD_LAST_INBOUND: {"$gte": moment}}
        return {"$or": [{FIELD_LAST_INBOUND: {"$lt": moment}}, {FIELD_LAST_INBOUND: {"$eq": None}}]}
    return _var(node)


def _var(node: Var) -> Filter:
    field = f"{FIELD_VARIABLES}.{node.name}"
    op, value = node.op, node.value
    if op == "exists":
        return {field: {"$ne" if value else "$eq": None}}
    if op == "eq":
        return {field: {"$eq": value}}
    if op == "ne":
        return {field: {"$ne": value}}
    if op == "in":
        return {field: {"$in": list(value)}}  # type: ignore[arg-type]
    if op == "contains":
        if isinstance(value, str):
            return {field: {"$regex": regex_literal(value), "$options": "i"}}
        return {"$and": [{field: {"$type": "array"}}, {field: {"$eq": value}}]}
    return {field: {_ORDER[op]: value}}
