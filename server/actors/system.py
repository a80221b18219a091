"""The actor registry: activates a contact's actor on demand and passivates it when idle.

An idle actor has no task (see ``ContactActor``): passivating it is forgetting it, and its cached
document goes with it. Stopping lets every running actor drain its mailbox (the turns already
queued run), cancels what is still running after the grace, and answers the turns that never ran
with ``Unavailable``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from server.actors.contact_actor import ActorDeps, ContactActor
from server.actors.events import Event, TurnResult
from server.cancellation import cancel_all_and_wait, cancel_and_wait
from server.clock import Timing
from server.errors import Unavailable
from server.ids import ContactKey

log = logging.getLogger(__name__)


class ActorSystem:
    """Orleans-style virtual actors: callers address a contact, never an actor instance."""

    def __init__(self, deps: ActorDeps, idle_seconds: float = 60.0) -> None:
        self.deps = deps
        self._idle_seconds = idle_seconds
        self._actors: dict[ContactKey, ContactActor] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def active_count(self) -> int:
        return len(self._actors)

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(
            sweep_idle(self, self._idle_seconds, self.deps.timing), name="actor-sweeper"
        )

    def tell(self, key: ContactKey, event: Event) -> asyncio.Future[TurnResult]:
        """Queue ``event`` for the contact; the future resolves once its turn is committed."""
        if self._stopping:
            raise Unavailable("the server is shutting down; retry shortly")
        actor = self._actors.get(key)
        if actor is None:
            actor = self._actors[key] = ContactActor(key, self.deps)
        future: asyncio.Future[TurnResult] = asyncio.get_running_loop().create_future()
        actor.post(event, future)
        return future

    async def ask(self, key: ContactKey, event: Event) -> TurnResult:
        return await self.tell(key, event)

    def passivate_idle(self, idle_seconds: float) -> int:
        """Drop actors idle for ``idle_seconds`` or more (on the actors' timing); their state is safe
        in the store."""
        actors = self._actors
        older_than = self.deps.timing.monotonic() - idle_seconds
        idle = [key for key, actor in actors.items() if actor.idle and actor.last_active <= older_than]
        for key in idle:
            del actors[key]
        if len(idle) > len(actors):
            # A dict never shrinks its table: rebuilt, it does not keep the slots of a peak
            # (about 40 bytes for every contact ever active at once) for the life of the process.
            self._actors = dict(actors.items())
        return len(idle)

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Finish the turns already queued (graceful shutdown), then drop every actor."""
        self._stopping = True
        if self._sweeper is not None:
            await cancel_and_wait(self._sweeper)
        # Nothing new is queued from here (``tell`` refuses): each task exits once its mailbox is empty.
        tasks = [actor.task for actor in self._actors.values() if actor.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_seconds)
            await cancel_all_and_wait(pending)
        for actor in self._actors.values():  # a task cancelled before its first step ran nothing
            actor.fail_queued(Unavailable("the server stopped before this turn ran; retry"))
        self._actors.clear()


class Passivating(Protocol):
    def passivate_idle(self, idle_seconds: float) -> int: ...


async def sweep_idle(actors: Passivating, idle_seconds: float, timing: Timing) -> None:
    """Forever: passivate the actors idle for ``idle_seconds``, looking a few times per period."""
    interval = max(0.05, min(idle_seconds / 2, 5.0))
    while True:
        await timing.sleep(interval)
        actors.passivate_idle(idle_seconds)
