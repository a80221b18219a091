"""A clock tests move forward: the runtime reads time through it, so timers fall due without sleeping."""

from __future__ import annotations

from datetime import datetime, timedelta

from server.clock import Clock


class ShiftedClock:
    """The ``base`` clock moved forward by ``shift`` (time passes without sleeping)."""

    def __init__(self, base: Clock) -> None:
        self.base = base
        self.shift = timedelta()

    def now(self) -> datetime:
        return self.base.now() + self.shift

    def advance(self, delta: timedelta) -> None:
        self.shift += delta
