"""Moving a ``VirtualTiming`` in tests: the components sleep on it, the test decides when time passes.

A component woken by an advance often does real I/O (Redis, the store, HTTP on loopback) before it
sleeps again; these helpers wait for that as a condition (bounded in real time), never for a
fixed duration.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from server.clock import SystemTiming, VirtualTiming
from tests.support.graphql import eventually

T = TypeVar("T")


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Until ``condition()`` holds (checked each loop turn, then every millisecond)."""
    deadline = time.monotonic() + timeout
    turns = 0
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        turns += 1
        await asyncio.sleep(0 if turns < 50 else 0.001)


async def asleep(timing: VirtualTiming, sleepers: int = 1, timeout: float = 10.0) -> float:
    """Until ``sleepers`` wait on ``timing``; seconds until the earliest of them wakes."""
    await until(lambda: timing.sleeping >= sleepers, f"{sleepers} sleeper(s) on the virtual timing", timeout)
    due = timing.next_due()
    assert due is not None
    return due


async def advance_until(
    timing: VirtualTiming,
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    step: float,
    timeout: float = 60.0,
) -> T:
    """Advance ``step`` at a time until ``accept(await probe())``: for a whole runtime, whose
    components wake, do their I/O and sleep again at moments a test does not follow one by one."""
    return await eventually(probe, accept, timeout=timeout, pause=lambda: timing.advance(step))


async def run_on(timing: VirtualTiming, task: asyncio.Future[T], timeout: float = 30.0) -> T:
    """Until ``task`` ends, advance to each wake-up as soon as something sleeps: for components
    whose only sleeps are on ``timing`` (their I/O is waited for, time passes only in sleeps)."""
    deadline = time.monotonic() + timeout
    while not task.done():
        await until(
            lambda: timing.sleeping > 0 or task.done(), "a sleeper or the end", deadline - time.monotonic()
        )
        due = timing.next_due()
        if due is not None and not task.done():
            await timing.advance(due)
    return task.result()


class WatchedTiming(SystemTiming):
    """The system timing, counting who waits in ``wait`` now: for a test that needs a component
    idle on real time (a race with asyncio's own timeout) before it acts."""

    def __init__(self) -> None:
        self.waiting = 0

    async def wait(self, event: asyncio.Event, seconds: float) -> bool:
        self.waiting += 1
        try:
            return await super().wait(event, seconds)
        finally:
            self.waiting -= 1
