"""Timers as arq deferred jobs (job id = timer id), fired by an arq worker inside the server.

Redis only holds the schedule; the timer itself lives in the contact document, so a lost or
duplicated job is harmless: recovery re-enqueues missing ones, and a stale one finds nothing.
"""

from __future__ import annotations

from typing import Any

from arq.connections import ArqRedis
from arq.worker import Retry, Worker, func

from server.actors.events import TimerFired
from server.actors.system import ActorSystem
from server.errors import Unavailable
from server.ids import ContactKey

FIRE_TIMER = "fire_timer"


class ArqTimerScheduler:
    def __init__(self, pool: ArqRedis, queue_name: str) -> None:
        self._pool = pool
        self.queue_name = queue_name

    async def schedule(self, key: ContactKey, timer: dict[str, Any]) -> None:
        """Enqueue once: arq ignores a job id that is already queued or running."""
        await self._pool.enqueue_job(
            FIRE_TIMER,
            key.workspace_id,
            key.phone,
            timer["id"],
            _job_id=timer["id"],
            _defer_until=timer["due_at"],
            _queue_name=self.queue_name,
        )


async def fire_timer(ctx: dict[str, Any], workspace_id: str, phone: str, timer_id: str) -> str:
    actors: ActorSystem = ctx["actors"]
    try:
        result = await actors.ask(ContactKey(workspace_id, phone), TimerFired(timer_id))
    except Unavailable as exc:
        raise Retry(defer=1) from exc
    return "stale" if not result.changed else "fired"


def timer_worker(pool: ArqRedis, queue_name: str, actors: ActorSystem, poll_seconds: float) -> Worker:
    """An arq worker sharing the server's event loop and actor system."""
    return Worker(
        functions=[func(fire_timer, name=FIRE_TIMER, max_tries=20)],
        queue_name=queue_name,
        redis_pool=pool,
        ctx={"actors": actors},
        handle_signals=False,
        poll_delay=poll_seconds,
        max_jobs=1000,
        keep_result=0,
        job_timeout=60,
        log_results=False,
    )
