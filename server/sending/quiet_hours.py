"""When does the quiet period around a moment end, in a given time zone.

Windows are read in local wall-clock time (``settings.QuietWindow``), so "21:00 to 09:00" stays
21:00 to 09:00 across a daylight-saving change. Local times are turned into instants with
``zoneinfo`` (a time that does not exist on a spring-forward night is read as the instant the
clock shows it, as ``zoneinfo`` does); comparisons are in UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from server.clock import as_utc
from server.sending.settings import QuietWindow

MAX_CHAINED = 16  # windows that follow each other (weeknights into a weekend) are joined


def quiet_until(windows: tuple[QuietWindow, ...], moment: datetime, zone: ZoneInfo) -> datetime | None:
    """The instant (UTC) the quiet period containing ``moment`` ends, or None when not quiet.

    The end of a window is not quiet: a message due exactly then goes out. Windows that touch
    or overlap are one period, so the answer is never inside another window.
    """
    if not windows:
        return None
    cursor = as_utc(moment)
    end: datetime | None = None
    for _ in range(MAX_CHAINED):
        found = _end_of_window_containing(windows, cursor, zone)
        if found is None or (end is not None and found <= end):
            break
        end = cursor = found
    return end


def _end_of_window_containing(
    windows: tuple[QuietWindow, ...], instant: datetime, zone: ZoneInfo
) -> datetime | None:
    local_day = instant.astimezone(zone).date()
    ends: list[datetime] = []
    for window in windows:
        for offset in (0, -1):  # a window started yesterday may run past midnight
            day = local_day + timedelta(days=offset)
            if day.weekday() not in window.days:
                continue
            start, end = _span(window, day, zone)
            if start <= instant < end:
                ends.append(end)
    return max(ends) if ends else None


def _span(window: QuietWindow, day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    start = _instant(day, window.start, zone)
    if window.end is None:
        end = _instant(day + timedelta(days=1), time(0), zone)
    elif window.end > window.start:
        end = _instant(day, window.end, zone)
    else:  # past midnight (start == end: the whole day)
        end = _instant(day + timedelta(days=1), window.end, zone)
    return start, end


def _instant(day: date, clock: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, clock, tzinfo=zone).astimezone(UTC)
