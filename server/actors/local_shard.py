"""A shard's actors in this process, and the futures of the turns queued on them.

``ShardedActors`` (``server/actors/shards.py``) keeps one per shard it holds. A shard's system is
stopped on handover, lease loss and shutdown; whatever it did not run, or cancelled after its
grace, the callers (often another replica waiting on a reply) get ``Unavailable``, never a
future that hangs.
"""

from __future__ import annotations

import asyncio

from server.actors.contact_actor import ActorDeps
from server.actors.events import Event, TurnResult
from server.actors.system import ActorSystem
from server.errors import Unavailable
from server.ids import ContactKey


class LocalShard:
    """The ``ActorSystem`` of one held shard; every turn queued on it ends in a result or an error."""

    def __init__(self, deps: ActorDeps, idle_seconds: float) -> None:
        self.system = ActorSystem(deps, idle_seconds=idle_seconds)  # swept by ``ShardedActors``
        self._queued: set[asyncio.Future[TurnResult]] = set()

    def tell(self, key: ContactKey, event: Event) -> asyncio.Future[TurnResult]:
        future = self.system.tell(key, event)
        self._queued.add(future)
        future.add_done_callback(self._queued.discard)
        return future

    async def stop(self, grace_seconds: float) -> None:
        try:
            await self.system.stop(grace_seconds)
        finally:
            for future in list(self._queued):
                if not future.done():
                    future.set_exception(Unavailable("the contact's turn was stopped on this server; retry"))
