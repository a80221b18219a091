"""Counting a workspace's work in flight, which a deletion waits for (``server/workspace_inflight.py``)."""

from __future__ import annotations

import asyncio

from server.workspace_inflight import InFlight


async def test_idle_answers_at_once_when_nothing_of_the_workspace_is_in_flight() -> None:
    in_flight = InFlight()
    with in_flight.enter("ws_other"):
        await in_flight.idle("ws_a")  # another workspace's work does not count


async def test_idle_waits_for_the_last_piece_of_work_and_a_ticket_ends_once() -> None:
    in_flight = InFlight()
    first, second = in_flight.enter("ws_a"), in_flight.enter("ws_a")
    waiter = asyncio.ensure_future(in_flight.idle("ws_a"))
    first.release()
    first.release()  # twice: still one piece of work in flight
    await asyncio.sleep(0)
    assert in_flight.count("ws_a") == 1 and not waiter.done()
    second.release()
    await asyncio.wait_for(waiter, timeout=5)
    assert in_flight.count("ws_a") == 0


async def test_work_admitted_while_a_waiter_waits_is_waited_for_too() -> None:
    in_flight = InFlight()
    first = in_flight.enter("ws_a")
    waiter = asyncio.ensure_future(in_flight.idle("ws_a"))
    await asyncio.sleep(0)
    later = in_flight.enter("ws_a")  # counted before the first ended
    first.release()
    await asyncio.sleep(0)
    assert not waiter.done()
    later.release()
    await asyncio.wait_for(waiter, timeout=5)
