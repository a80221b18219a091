"""Stopping background tasks: cancel a task (or several) and wait until it has ended.

A stop that cancels a task must wait for it, so the task's ``finally`` (a lease released, a
reply sent) has run before the stop goes on. It must also tell two cancellations apart: the
task's own, which the stop asked for and absorbs, and one aimed at the stopping code itself (its
caller gave up, e.g. a shutdown bound), which must keep propagating. ``await task`` under
``suppress(CancelledError)`` cannot tell them apart and swallows both; ``asyncio.wait`` can: it
never raises the task's outcome, only a cancellation of the waiter. It also keeps working inside
a ``finally`` of a task that is itself being cancelled (the cancel was delivered already).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

SECOND_CANCEL_SECONDS = 1.0  # after the grace: how long a task that swallowed a cancel gets


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has ended; ``None`` (never started) is nothing to stop.

    The task's cancellation is absorbed; an exception it ended with is raised here, as awaiting
    it would; a cancellation of the caller propagates (the task has been cancelled all the same).
    """
    if task is None:
        return
    task.cancel()
    await asyncio.wait([task])
    error = None if task.cancelled() else task.exception()
    if error is not None:
        raise error


async def cancel_all_and_wait(tasks: Iterable[asyncio.Task[Any]], grace_seconds: float | None = None) -> None:
    """Cancel every task and wait until all have ended (the caller's cancellation propagates).

    With ``grace_seconds``, whatever still runs after it is cancelled once more and given a
    second: a cancel can be swallowed by code that catches it late (3.11's ``wait_for`` does when
    its inner await finishes at the same moment), and one lost cancel must not hang a server's
    stop; the tasks that ignore both are logged and left. An exception a task ended with is
    logged with its traceback, not raised: one failed task must not keep a stop from the clean-up
    that follows (releasing leases, failing queued callers).
    """
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    for task in pending:
        task.cancel()
    if pending:
        _, pending = await asyncio.wait(pending, timeout=grace_seconds)
    if pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=SECOND_CANCEL_SECONDS)
    if pending:
        log.error("tasks ignored cancellation on stop: %s", sorted(task.get_name() for task in pending))
    for task in tasks:
        error = None if not task.done() or task.cancelled() else task.exception()
        if error is not None:
            log.error("task %s had failed when it was stopped", task.get_name(), exc_info=error)
