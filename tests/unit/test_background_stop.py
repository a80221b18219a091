"""The runtime's stop of its background loops: their ``finally`` may finish, a lost cancel cannot hang it."""

from __future__ import annotations

import asyncio
import contextlib

from server.runtime import _cancel_and_wait


async def test_a_loop_may_finish_its_cleanup_before_being_asked_again() -> None:
    settled = asyncio.Event()

    async def loop_with_cleanup() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.8)  # e.g. acking the timer jobs whose turns committed
            settled.set()

    task = asyncio.create_task(loop_with_cleanup())
    await asyncio.sleep(0)
    await _cancel_and_wait([task], grace_seconds=5.0)
    assert settled.is_set() and task.cancelled()


async def test_a_swallowed_cancel_is_asked_again_after_the_grace() -> None:
    async def swallows_the_first_cancel() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        await asyncio.Event().wait()  # polls on, as the timer worker did

    task = asyncio.create_task(swallows_the_first_cancel())
    await asyncio.sleep(0)
    await asyncio.wait_for(_cancel_and_wait([task], grace_seconds=0.2), timeout=5)
    assert task.cancelled()
