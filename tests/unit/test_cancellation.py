"""Stopping background tasks (``server/cancellation.py``): the task's own cancellation is absorbed,
the caller's is not, a task's failure is raised or logged, and a lost cancel cannot hang a stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from server.cancellation import cancel_all_and_wait, cancel_and_wait


async def blocked_with_cleanup(
    cleanup: asyncio.Event, finished: asyncio.Event, cleaning: asyncio.Event | None = None
) -> None:
    """Runs until cancelled, then takes until ``cleanup`` is set to finish its ``finally``
    (``cleaning`` is set as the ``finally`` begins)."""
    try:
        await asyncio.Event().wait()
    finally:
        if cleaning is not None:
            cleaning.set()
        await cleanup.wait()
        finished.set()


async def started(task: asyncio.Task[None]) -> asyncio.Task[None]:
    await asyncio.sleep(0)  # its first step: it is now inside its ``try``
    return task


async def test_the_task_is_cancelled_and_its_finally_has_run_when_the_stop_returns() -> None:
    cleanup, finished, cleaning = asyncio.Event(), asyncio.Event(), asyncio.Event()
    task = await started(asyncio.create_task(blocked_with_cleanup(cleanup, finished, cleaning)))
    stopping = asyncio.create_task(cancel_and_wait(task))
    await cleaning.wait()  # cancelled, in its finally
    assert not stopping.done(), "returned before the task's finally ran"
    cleanup.set()
    await stopping  # the task's CancelledError is absorbed
    assert finished.is_set() and task.cancelled()


async def test_nothing_to_stop_when_the_task_never_started() -> None:
    await cancel_and_wait(None)
    await cancel_all_and_wait([])


async def test_a_cancellation_aimed_at_the_caller_is_not_swallowed() -> None:
    """The stopping code is cancelled while the task still cleans up: it ends cancelled (with
    ``suppress(CancelledError): await task`` it went on as if nothing had happened)."""
    cleanup, finished = asyncio.Event(), asyncio.Event()
    went_on: list[str] = []

    async def stop_single() -> None:
        await cancel_and_wait(task)
        went_on.append("single")

    async def stop_all() -> None:
        await cancel_all_and_wait([task])
        went_on.append("all")

    for stop in (stop_single, stop_all):
        cleaning = asyncio.Event()
        task = await started(asyncio.create_task(blocked_with_cleanup(cleanup, finished, cleaning)))
        caller = asyncio.create_task(stop())
        await cleaning.wait()  # the caller waits on the task's cleanup
        caller.cancel()
        await asyncio.wait([caller])
        assert caller.cancelled(), stop.__name__
        assert task.cancelling(), "the task was cancelled all the same"
    assert went_on == []
    cleanup.set()
    await asyncio.sleep(0)


async def test_a_stop_in_the_finally_of_a_cancelled_task_still_waits_for_its_child() -> None:
    """The parent's own cancel was delivered already: waiting for the child must not end at once."""
    cleanup, finished, cleaning = asyncio.Event(), asyncio.Event(), asyncio.Event()
    child = await started(asyncio.create_task(blocked_with_cleanup(cleanup, finished, cleaning)))
    child_done_at_stop: list[bool] = []

    async def parent() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await cancel_and_wait(child)
            child_done_at_stop.append(child.done())

    running = await started(asyncio.create_task(parent()))
    running.cancel()
    await cleaning.wait()  # the parent's finally cancelled the child, which cleans up
    cleanup.set()
    await asyncio.wait([running])
    assert running.cancelled() and child_done_at_stop == [True]


async def test_a_task_that_failed_raises_its_error_from_cancel_and_wait() -> None:
    async def fails_on_cancel() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise RuntimeError("could not clean up") from None

    task = await started(asyncio.create_task(fails_on_cancel()))
    with pytest.raises(RuntimeError, match="could not clean up"):
        await cancel_and_wait(task)


async def test_cancel_all_logs_each_failure_and_still_waits_for_every_task(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cleanup, finished, cleaning = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def failed() -> None:
        raise ValueError("broken before the stop")

    broken = asyncio.create_task(failed(), name="broken-one")
    slow = await started(
        asyncio.create_task(blocked_with_cleanup(cleanup, finished, cleaning), name="slow-one")
    )
    stopping = asyncio.create_task(cancel_all_and_wait([broken, slow]))
    await cleaning.wait()
    assert not stopping.done()
    cleanup.set()
    with caplog.at_level(logging.ERROR, logger="server.cancellation"):
        await stopping  # raises nothing: the clean-up after a stop goes on
    assert finished.is_set() and slow.cancelled()
    failures = [r for r in caplog.records if "broken-one" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info and failures[0].exc_info[0] is ValueError
    assert not any("slow-one" in r.getMessage() for r in caplog.records)


async def test_a_loop_may_finish_its_cleanup_within_the_grace() -> None:
    cleanup, settled, cleaning = asyncio.Event(), asyncio.Event(), asyncio.Event()
    # Its cleanup (e.g. acking the timer jobs whose turns committed) ends when the test says.
    task = await started(asyncio.create_task(blocked_with_cleanup(cleanup, settled, cleaning)))
    stopping = asyncio.create_task(cancel_all_and_wait([task], grace_seconds=5.0))
    await cleaning.wait()
    await asyncio.sleep(0)  # the stop now waits within its grace
    cleanup.set()
    await stopping
    assert settled.is_set() and task.cancelled()


async def test_a_swallowed_cancel_is_asked_again_after_the_grace() -> None:
    async def swallows_the_first_cancel() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        await asyncio.Event().wait()  # polls on, as the timer worker did

    task = await started(asyncio.create_task(swallows_the_first_cancel()))
    await asyncio.wait_for(cancel_all_and_wait([task], grace_seconds=0.2), timeout=5)
    assert task.cancelled()
