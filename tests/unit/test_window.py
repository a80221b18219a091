"""The 24-hour customer service window at its boundary (WhatsApp: 24 h from the last inbound)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from server.window import window_open

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def test_the_window_is_open_until_24_hours_after_the_last_inbound() -> None:
    assert window_open(NOW - timedelta(hours=24) + SECOND, NOW)
    assert window_open(NOW - timedelta(hours=23, minutes=59), NOW)
    assert window_open(NOW, NOW)


def test_the_window_is_closed_at_24_hours_and_after() -> None:
    assert not window_open(NOW - timedelta(hours=24), NOW)
    assert not window_open(NOW - timedelta(hours=24) - SECOND, NOW)
    assert not window_open(NOW - timedelta(hours=25) + SECOND, NOW)
    assert not window_open(None, NOW)


def test_a_naive_stored_time_is_read_as_utc() -> None:
    stored = (NOW - timedelta(hours=24) + SECOND).replace(tzinfo=None)  # as BSON gives it back
    assert window_open(stored, NOW)
    assert not window_open(stored - 2 * SECOND, NOW)
