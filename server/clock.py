"""Injectable time sources, so tests and recovery logic never depend on real time directly.

Two kinds of time, one home:

- ``Clock``: the wall time documents carry (``created_at``, due timers, the 24-hour window).
- ``Timing``: elapsed time and waiting -- what schedules, deadlines and back-offs read (a lease's
  trust, a throughput slot, a retry's delay, a polling loop). ``SystemTiming`` is the event loop's
  real time; ``VirtualTiming`` stands still until a test ``advance``s it, waking the sleepers due.

What stays on the event loop's own clock (``asyncio.timeout``): a bound on real I/O -- a Redis
call, a reply from another process, the drain of turns that talk to the store. It guards against a
peer that does not answer, which time that stands still cannot stand in for.

Redis expires keys (leases, pacing schedules) in real time. A component that trusts a Redis key
until a deadline of its own must measure that deadline on a timing that runs no slower than real
time, or it would trust a key Redis already dropped: the composition root gives those (the shard
leases and the actors routed by them) ``SystemTiming`` whatever the rest of the process runs on.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
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


class Timing(Protocol):
    """Elapsed time (seconds, only differences mean anything) and waiting on it."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    async def wait(self, event: asyncio.Event, seconds: float) -> bool:
        """Until ``event`` is set or ``seconds`` passed; whether the event was set."""
        ...


class SystemTiming:
    """The event loop's real time."""

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait(self, event: asyncio.Event, seconds: float) -> bool:
        # asyncio.timeout, not wait_for: 3.11's wait_for drops a cancel that lands as the wake.
        try:
            async with asyncio.timeout(seconds):
                await event.wait()
        except TimeoutError:
            pass
        return event.is_set()


# Loop turns ``advance`` lets pass after each wake-up, so a woken task reaches its next wait (its
# next sleep lands at the right moment) before time moves on. Real I/O takes longer: a test waits
# for what it expects (a condition), then advances again.
SETTLE_TURNS = 20


class VirtualTiming:
    """Time that passes only when a test says so: ``advance`` wakes, in order, every sleeper due.

    Never give it to a component whose deadlines mirror a Redis key's lifetime across processes
    (see the module docstring): it would trust a key Redis already expired.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[object]]] = []
        self._order = itertools.count()  # equal due times wake in the order they slept

    def monotonic(self) -> float:
        return self._now

    @property
    def sleeping(self) -> int:
        """How many sleepers wait (a test's condition before it advances)."""
        return sum(1 for _, _, future in self._sleepers if not future.done())

    def next_due(self) -> float | None:
        """Seconds until the earliest sleeper wakes (None: nobody sleeps)."""
        due = [at for at, _, future in self._sleepers if not future.done()]
        return min(due) - self._now if due else None

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        await self._due_in(seconds)  # cancelled: its future is skipped when due

    async def wait(self, event: asyncio.Event, seconds: float) -> bool:
        if event.is_set():
            return True
        if seconds <= 0:
            await asyncio.sleep(0)
            return event.is_set()
        waiter: asyncio.Future[object] = asyncio.ensure_future(event.wait())
        due: asyncio.Future[object] = self._due_in(seconds)
        try:
            await asyncio.wait([waiter, due], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            due.cancel()
        return event.is_set()

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking each sleeper at its own moment, earliest first (a loop that
        sleeps again while time moves wakes again within the same advance)."""
        if seconds < 0:
            raise ValueError("time does not go back")
        target = self._now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            at, _, future = heapq.heappop(self._sleepers)
            if future.done():
                continue
            self._now = max(self._now, at)
            future.set_result(None)
            await _settle()
        self._now = target
        await _settle()

    def _due_in(self, seconds: float) -> asyncio.Future[object]:
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), future))
        return future


async def _settle() -> None:
    for _ in range(SETTLE_TURNS):
        await asyncio.sleep(0)
