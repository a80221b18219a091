"""Stored values as JSON for ``JSON`` fields: datetimes become ISO-8601 strings."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from server.clock import as_utc


def plain(value: Any) -> Any:
    """Make stored values JSON-safe (datetimes as ISO-8601 strings in UTC)."""
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
