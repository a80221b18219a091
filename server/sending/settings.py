"""A workspace's sending settings: quiet hours and the typing indicator, checked and stored.

Stored on the workspace document under ``settings.sending`` (``WorkspaceSettingsRepository``):

    {"quiet_hours": [{"days": ["MON", ..., "FRI"], "start": "21:00", "end": "09:00"}, ...],
     "typing_indicator": true}

A quiet window starts on each listed day at ``start`` (in the contact's time zone) and ends at
``end``: the same day when ``end`` is later, else the next day; ``end`` may be ``24:00``, and
``start == end`` is the whole day. Windows may overlap or follow each other (a weeknight window
and the whole weekend): a message waits until the last one touching its moment ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time
from typing import Any

from server.errors import InvalidInput

WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
MAX_WINDOWS = 14


@dataclass(frozen=True)
class QuietWindow:
    """Quiet from ``start`` on each of ``days`` (0 = Monday) until ``end`` (see the module doc)."""

    days: tuple[int, ...]
    start: time
    end: time | None  # None: midnight at the end of the day ("24:00")

    def document(self) -> dict[str, Any]:
        return {
            "days": [WEEKDAYS[d] for d in self.days],
            "start": _clock_text(self.start),
            "end": "24:00" if self.end is None else _clock_text(self.end),
        }


@dataclass(frozen=True)
class SendingSettings:
    quiet_hours: tuple[QuietWindow, ...] = ()
    typing_indicator: bool = True

    def document(self) -> dict[str, Any]:
        return {
            "quiet_hours": [w.document() for w in self.quiet_hours],
            "typing_indicator": self.typing_indicator,
        }


@dataclass(frozen=True)
class SendingRules:
    """What the policy needs of a workspace at once: its settings and its time zone."""

    settings: SendingSettings = field(default_factory=SendingSettings)
    timezone: str = "UTC"


def settings_from_document(document: object) -> SendingSettings:
    """The stored settings (absent or unreadable parts take their defaults, never raise)."""
    if not isinstance(document, dict):
        return SendingSettings()
    try:
        windows = parse_quiet_hours(document.get("quiet_hours") or [])
    except InvalidInput:
        windows = ()
    return SendingSettings(
        quiet_hours=windows, typing_indicator=document.get("typing_indicator") is not False
    )


def parse_quiet_hours(raw: object, field_name: str = "quietHours") -> tuple[QuietWindow, ...]:
    """Quiet windows from input, or ``InvalidInput`` naming the window and field that is wrong."""
    if not isinstance(raw, list | tuple):
        raise InvalidInput(f"{field_name}: a list of windows {{days, start, end}}", field=field_name)
    if len(raw) > MAX_WINDOWS:
        raise InvalidInput(f"{field_name}: at most {MAX_WINDOWS} windows", field=field_name)
    return tuple(_window(item, f"{field_name}[{index}]") for index, item in enumerate(raw))


def _window(item: object, where: str) -> QuietWindow:
    if not isinstance(item, dict):
        raise InvalidInput(f"{where}: a window is {{days, start, end}}", field=where)
    days_raw = item.get("days")
    if not isinstance(days_raw, list | tuple) or not days_raw:
        raise InvalidInput(
            f"{where}.days: list the days it starts on, e.g. ['MON', 'TUE']", field=f"{where}.days"
        )
    days: list[int] = []
    for day in days_raw:
        name = str(day).strip().upper()[:3]
        if name not in WEEKDAYS:
            raise InvalidInput(
                f"{where}.days: {day!r} is not one of {', '.join(WEEKDAYS)}", field=f"{where}.days"
            )
        if WEEKDAYS.index(name) not in days:
            days.append(WEEKDAYS.index(name))
    start = _clock(item.get("start"), f"{where}.start", allow_midnight_end=False)
    end = _clock(item.get("end"), f"{where}.end", allow_midnight_end=True)
    return QuietWindow(days=tuple(sorted(days)), start=start or time(0), end=end)


def _clock(value: object, where: str, allow_midnight_end: bool) -> time | None:
    text = str(value or "").strip()
    if allow_midnight_end and text in ("24:00", "24:00:00"):
        return None
    parts = text.split(":")
    if len(parts) == 2 and all(p.isdigit() and len(p) == 2 for p in parts):
        hour, minute = int(parts[0]), int(parts[1])
        if hour < 24 and minute < 60:
            return time(hour, minute)
    upper = "23:59 (or 24:00 for the end of the day)" if allow_midnight_end else "23:59"
    raise InvalidInput(f"{where}: {value!r} is not a time of day HH:MM from 00:00 to {upper}", field=where)


def _clock_text(moment: time) -> str:
    return f"{moment.hour:02d}:{moment.minute:02d}"
