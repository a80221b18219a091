"""Injectable time source, so tests and recovery logic never depend on the wall clock directly."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """UTC wall clock, truncated to milliseconds as BSON stores it (keeps round trips equal)."""

    def now(self) -> datetime:
        moment = datetime.now(UTC)
        return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def as_utc(moment: datetime) -> datetime:
    """BSON datetimes come back naive (UTC); make every comparison timezone-aware."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
