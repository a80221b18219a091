"""The virtual timing tests run components on: time stands still until advanced, and an advance
wakes each sleeper at its own moment, earliest first."""

from __future__ import annotations

import asyncio

import pytest

from server.clock import SystemTiming, VirtualTiming


async def test_sleepers_wake_in_order_at_their_own_moment() -> None:
    timing = VirtualTiming()
    start = timing.monotonic()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await timing.sleep(seconds)
        woke.append((name, timing.monotonic() - start))

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in (("late", 3.0), ("early", 1.0), ("tie", 1.0))]
    await asyncio.sleep(0)
    assert timing.sleeping == 3 and timing.next_due() == 1.0
    await timing.advance(0.5)
    assert woke == [] and timing.monotonic() - start == 0.5  # nothing due yet
    await timing.advance(2.0)
    assert woke == [("early", 1.0), ("tie", 1.0)]
    await timing.advance(10.0)
    assert woke[-1] == ("late", 3.0) and timing.monotonic() - start == 12.5
    await asyncio.gather(*tasks)


async def test_a_loop_sleeping_again_wakes_again_within_one_advance() -> None:
    timing = VirtualTiming()
    ticks: list[float] = []

    async def loop() -> None:
        while True:
            await timing.sleep(1.0)
            ticks.append(timing.monotonic())

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    start = timing.monotonic()
    await timing.advance(3.5)
    assert [t - start for t in ticks] == [1.0, 2.0, 3.0]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert timing.sleeping == 0  # a cancelled sleeper is no longer counted


async def test_wait_returns_on_the_event_or_when_its_time_passed() -> None:
    timing = VirtualTiming()
    event = asyncio.Event()
    waiting = asyncio.create_task(timing.wait(event, 5.0))
    await asyncio.sleep(0)
    await timing.advance(4.9)
    assert not waiting.done()
    await timing.advance(0.1)
    assert waiting.done() and waiting.result() is False
    waiting = asyncio.create_task(timing.wait(event, 5.0))
    await asyncio.sleep(0)
    event.set()
    assert await waiting is True
    assert await timing.wait(event, 0) is True  # already set: no wait at all


async def test_a_cancelled_wait_leaves_nothing_behind() -> None:
    timing = VirtualTiming()
    waiting = asyncio.create_task(timing.wait(asyncio.Event(), 5.0))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await asyncio.sleep(0)
    assert timing.sleeping == 0
    assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


async def test_time_does_not_go_back() -> None:
    with pytest.raises(ValueError):
        await VirtualTiming().advance(-1)


async def test_system_timing_waits_for_the_event_or_the_time() -> None:
    timing, event = SystemTiming(), asyncio.Event()
    assert await timing.wait(event, 0.01) is False
    asyncio.get_running_loop().call_soon(event.set)
    assert await timing.wait(event, 10.0) is True
    before = timing.monotonic()
    await timing.sleep(0)
    assert timing.monotonic() >= before
