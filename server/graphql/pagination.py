"""Cursor pagination (``edges``/``pageInfo``) with capped page sizes; cursors are opaque strings."""

from __future__ import annotations

import base64
import json
from typing import Any

import strawberry

from server.errors import InvalidInput

DEFAULT_PAGE = 20
MAX_PAGE = 100


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


def page_size(first: int | None, maximum: int = MAX_PAGE) -> int:
    if first is None:
        return DEFAULT_PAGE
    if first < 1 or first > maximum:
        raise InvalidInput(f"first must be between 1 and {maximum}", field="first")
    return first


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, default=str).encode()).decode()


def decode_cursor(cursor: str | None) -> list[Any] | None:
    if cursor is None:
        return None
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError):
        raise InvalidInput("after: not a cursor this API returned", field="after") from None
    if not isinstance(values, list):
        raise InvalidInput("after: not a cursor this API returned", field="after")
    return values
