"""A deep copy of a stored document (dicts, lists and immutable values), a few times cheaper than
``copy.deepcopy``: each contact turn works on a copy of the contact, and ``deepcopy``'s memo and
dispatch cost about half a millisecond per turn (issue 19's profile of the inbound path)."""

from __future__ import annotations

import copy
import datetime as dt
from typing import TypeVar

T = TypeVar("T")

# Values shared between the copies: nothing can change them in place.
_IMMUTABLE = frozenset({str, int, float, bool, type(None), bytes, dt.datetime, dt.date, dt.timedelta})


def copy_document(value: T) -> T:
    """A copy sharing nothing mutable with ``value``; any type other than a plain dict, list or
    immutable scalar (a set, a tuple, a driver type) is copied by ``copy.deepcopy``."""
    kind = type(value)
    if kind is dict:
        return {key: copy_document(item) for key, item in value.items()}  # type: ignore[attr-defined,return-value]
    if kind is list:
        return [copy_document(item) for item in value]  # type: ignore[attr-defined,return-value]
    if kind in _IMMUTABLE:
        return value
    return copy.deepcopy(value)
