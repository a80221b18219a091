"""Durations as flows write them: ``30m``, ``2h``, ``3d``, ``45s`` or ISO-8601 (``PT90S``)."""

from __future__ import annotations

import re
from datetime import timedelta

_SHORT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_ISO = re.compile(
    r"^P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """Parse a duration; raise ``ValueError`` with the accepted forms when it is not one."""
    match = _SHORT.match(text or "")
    if match:
        return timedelta(**{_UNITS[match.group(2).lower()]: float(match.group(1))})
    iso = _ISO.match((text or "").strip())
    if iso and any(iso.groupdict().values()) and not text.strip().upper().endswith("T"):
        parts = {k: float(v) for k, v in iso.groupdict().items() if v}
        return timedelta(**parts)
    raise ValueError(f"{text!r} is not a duration: use 30m, 2h, 3d, 45s or ISO-8601 such as PT2H")
