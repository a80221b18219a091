"""Whether a workspace may act now, asked by API keys, webhooks and every contact turn.

An operator disables a workspace (or starts deleting it): from then on its keys are refused
(``WORKSPACE_DISABLED``), its webhooks answered 410 and its turns refused, so its timers are held
(``server/actors/timers.py`` parks them; enabling re-arms them from the contacts). Every turn asks,
so the answer is cached per process for ``ttl_seconds``; a change is announced through Redis and
every process (this one at once) forgets the workspace's cached settings and closes its
WebSockets, so the cache bounds how late a process learns only when that message is lost.

The gate also knows what work of each workspace is in flight here (``in_flight``): a turn, a
webhook being stored or a broadcast being sent is ``admit``-ted (counted, then checked) and counts
until it ends. Deleting a workspace (``drain_for_deletion``) marks it deleting everywhere and waits
until no process has work of it in flight: this one directly, every other live replica by its
acknowledgement through Redis once it drained its own, so nothing admitted before the deletion
writes after its passes. A process remembers the workspaces it heard deleted: their document is
gone, and a missing document otherwise means "act as active" (workspaces of older versions).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from server.cancellation import cancel_all_and_wait
from server.errors import WorkspaceDisabled
from server.expiring import ExpiringCache
from server.ids import new_id
from server.pubsub import RedisPubSub
from server.store.workspaces import ACTIVE, DELETING, DISABLED, WorkspaceRepository
from server.workspace_inflight import InFlight, Ticket

log = logging.getLogger(__name__)

CHANGED_TOPIC = "workspaces:changed"
DRAINED_TOPIC = "workspaces:drained"  # a replica has no work in flight of a workspace being deleted
TTL_SECONDS = 5.0

# What changed: its settings, or its status (``active``, ``disabled``, ``deleting``, ``deleted``).
SETTINGS = "settings"
DELETED = "deleted"
STOPPED = frozenset({DISABLED, DELETING, DELETED})  # its keys, webhooks and sockets are refused
GONE = frozenset({DELETING, DELETED})  # never acts again (a deleting workspace cannot be enabled)

# (workspace id, what changed); called synchronously on every process.
Listener = Callable[[str, str], None]


def refusal(workspace_id: str, status: str | None) -> WorkspaceDisabled | None:
    """The error a disabled, deleting or deleted workspace's requests get; None when it may act."""
    if status == DISABLED:
        return WorkspaceDisabled(
            "this workspace is disabled by the server's operator: its API keys, webhooks and flows are "
            "paused until it is enabled again",
            workspaceId=workspace_id,
        )
    if status == DELETING:
        return WorkspaceDisabled("this workspace is being deleted", workspaceId=workspace_id)
    if status == DELETED:
        return WorkspaceDisabled("this workspace was deleted", workspaceId=workspace_id)
    return None


@dataclass(frozen=True)
class Drained:
    """How waiting for a deleted workspace's work in flight ended."""

    here: bool  # this process's work of it ended in time
    unacknowledged: frozenset[str]  # live replicas that did not say theirs ended in time

    @property
    def complete(self) -> bool:
        return self.here and not self.unacknowledged


class _Acknowledgements:
    """The replicas a deletion waits for, and those that said they drained."""

    def __init__(self, expected: frozenset[str]) -> None:
        self.expected = expected
        self.acknowledged: set[str] = set()
        self.all_in = asyncio.Event()
        if not expected:
            self.all_in.set()

    def add(self, replica: str) -> None:
        self.acknowledged.add(replica)
        if self.expected <= self.acknowledged:
            self.all_in.set()

    @property
    def missing(self) -> frozenset[str]:
        return self.expected - self.acknowledged


class WorkspaceGate:
    def __init__(
        self,
        workspaces: WorkspaceRepository,
        pubsub: RedisPubSub,
        ttl_seconds: float = TTL_SECONDS,
        replica_id: str = "",
        live_replicas: Callable[[], Iterable[str]] = frozenset,
    ) -> None:
        """``replica_id``: this process among the replicas; ``live_replicas``: the replicas alive
        now (the shard leases' membership), whose acknowledgement a deletion waits for."""
        self._workspaces = workspaces
        self._pubsub = pubsub
        self._statuses: ExpiringCache[str, str | None] = ExpiringCache(ttl_seconds)
        self._listeners: list[Listener] = []
        self.replica_id = replica_id
        self._live_replicas = live_replicas
        self.in_flight = InFlight()
        # Deleting or deleted, as this process heard: refused without asking the store (the
        # document of a deleted workspace is gone, and no document otherwise means "active").
        self._gone: dict[str, str] = {}
        self._waiting: dict[str, _Acknowledgements] = {}  # by drain id: deletions waiting here
        self._acknowledging: set[asyncio.Task[None]] = set()

    async def status(self, workspace_id: str) -> str | None:
        """``active``, ``disabled``, ``deleting`` or ``deleted``; None when there is no such
        workspace document (contacts of workspaces made by code before documents were required act
        as active) and this process heard of no deletion of it."""
        gone = self._gone.get(workspace_id)
        if gone is not None:
            return gone
        return await self._statuses.get(workspace_id, lambda: self._workspaces.status(workspace_id))

    async def check(self, workspace_id: str) -> None:
        """Raise ``WorkspaceDisabled`` unless the workspace may act."""
        error = refusal(workspace_id, await self.status(workspace_id))
        if error is not None:
            raise error

    async def may_act(self, workspace_id: str) -> bool:
        return await self.status(workspace_id) in (ACTIVE, None)

    async def admit(self, workspace_id: str) -> Ticket | None:
        """Work of the workspace about to start: counted in flight until the ticket is released,
        or None (nothing counted) when the workspace may not act. Counted before it is checked, so
        a deletion that begins meanwhile either refuses it or waits for it."""
        self.in_flight.add(workspace_id)
        if await self._refusal_of_counted(workspace_id) is not None:
            return None
        return Ticket(self.in_flight, workspace_id)

    async def _refusal_of_counted(self, workspace_id: str) -> WorkspaceDisabled | None:
        """For work just counted in flight: None when the workspace may act, else the error (and the
        work is counted no more)."""
        try:
            status = await self.status(workspace_id)
        except BaseException:
            self.in_flight.done(workspace_id)
            raise
        status = self._gone.get(workspace_id, status)  # or heard while the store answered
        if status in (ACTIVE, None):
            return None
        self.in_flight.done(workspace_id)
        return refusal(workspace_id, status) or WorkspaceDisabled(
            "this workspace may not act now", workspaceId=workspace_id
        )

    def acting(self, workspace_id: str) -> _Acting:
        """``async with``: ``admit``, raising ``WorkspaceDisabled`` when the workspace may not act."""
        return _Acting(self, workspace_id)

    def carry(self, workspace_id: str) -> Ticket:
        """Count work that admitted work hands to another task (effects settling after a commit)."""
        return self.in_flight.enter(workspace_id)

    def refuses_now(self, workspace_id: str) -> bool:
        """Known here, without I/O, never to act again (deleting or deleted)."""
        return workspace_id in self._gone

    def on_change(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def changed(
        self, workspace_id: str, change: str, drain: str | None = None, drain_seconds: float = 0.0
    ) -> None:
        """After the store has the change (``SETTINGS`` or the new status): act on it here now, and
        tell every other process (``drain``: a deletion waits up to ``drain_seconds`` for their
        acknowledgements)."""
        self._apply(workspace_id, change)
        payload: dict[str, Any] = {"workspace_id": workspace_id, "change": change, "replica": self.replica_id}
        if drain is not None:
            payload.update(drain=drain, seconds=drain_seconds)
        try:
            await self._pubsub.publish(CHANGED_TOPIC, payload)
        except RedisError as exc:  # the store has it: other processes' caches expire in ttl
            log.warning(
                "workspace %s change not published (%s); other processes see it within %ss",
                workspace_id,
                type(exc).__name__,
                self._statuses.ttl,
            )

    async def drain_for_deletion(self, workspace_id: str, timeout: float) -> Drained:
        """After the store marked the workspace ``deleting``: refuse it on every process, and wait
        (at most ``timeout`` seconds) until its work in flight has ended here and every other live
        replica acknowledged that its own has (in a single process there is nobody to wait for)."""
        drain = new_id("drain")
        waiting = self._waiting[drain] = _Acknowledgements(
            frozenset(self._live_replicas()) - {self.replica_id}
        )
        here = False
        try:
            await self.changed(workspace_id, DELETING, drain, timeout)
            busy = self.in_flight.count(workspace_id)
            if busy or waiting.expected:
                log.info(
                    "workspace %s: the deletion waits for %d piece(s) of its work in flight here and "
                    "the acknowledgement of %d other replica(s)",
                    workspace_id,
                    busy,
                    len(waiting.expected),
                )
            try:
                async with asyncio.timeout(timeout):
                    await self.in_flight.idle(workspace_id)
                    here = True
                    await waiting.all_in.wait()
            except TimeoutError:
                here = here or self.in_flight.count(workspace_id) == 0
                log.warning(
                    "workspace %s: after %ss, %d piece(s) of its work still in flight here; no "
                    "acknowledgement from replica(s) %s",
                    workspace_id,
                    timeout,
                    self.in_flight.count(workspace_id),
                    ", ".join(sorted(waiting.missing)) or "-",
                )
            return Drained(here, waiting.missing)
        finally:
            del self._waiting[drain]

    def start(self) -> None:
        """Listen for changes other processes announce (registered before any is published)."""
        self._pubsub.on(CHANGED_TOPIC, self._heard)
        self._pubsub.on(DRAINED_TOPIC, self._acknowledged)

    async def stop(self) -> None:
        await cancel_all_and_wait(self._acknowledging)

    def _heard(self, payload: dict[str, Any]) -> None:
        workspace_id, change = payload.get("workspace_id"), payload.get("change")
        if not (isinstance(workspace_id, str) and isinstance(change, str)):
            return
        self._apply(workspace_id, change)
        drain = payload.get("drain")
        if change == DELETING and isinstance(drain, str) and payload.get("replica") != self.replica_id:
            seconds = payload.get("seconds")
            limit = float(seconds) if isinstance(seconds, int | float) and seconds > 0 else None
            task = asyncio.get_running_loop().create_task(
                self._acknowledge(workspace_id, drain, limit), name=f"workspace-drain:{workspace_id}"
            )
            self._acknowledging.add(task)
            task.add_done_callback(self._acknowledging.discard)

    async def _acknowledge(self, workspace_id: str, drain: str, limit: float | None) -> None:
        """A deletion elsewhere waits for this process: once its work of the workspace ended, say so.
        None when it does not end within the deletion's wait: it reports this replica not drained."""
        try:
            async with asyncio.timeout(limit):
                await self.in_flight.idle(workspace_id)
        except TimeoutError:
            log.warning(
                "workspace %s is being deleted; %d piece(s) of its work still in flight here after %ss",
                workspace_id,
                self.in_flight.count(workspace_id),
                limit,
            )
            return
        try:
            await self._pubsub.publish(
                DRAINED_TOPIC, {"workspace_id": workspace_id, "drain": drain, "replica": self.replica_id}
            )
        except RedisError as exc:
            log.warning("could not acknowledge the deletion of workspace %s (%s)", workspace_id, exc)

    def _acknowledged(self, payload: dict[str, Any]) -> None:
        waiting = self._waiting.get(str(payload.get("drain")))
        replica = payload.get("replica")
        if waiting is not None and isinstance(replica, str):
            waiting.add(replica)

    def _apply(self, workspace_id: str, change: str) -> None:
        if change in GONE:
            self._gone[workspace_id] = change
        self._statuses.forget(workspace_id)
        for listener in self._listeners:
            try:
                listener(workspace_id, change)
            except Exception:
                log.exception("a workspace-change listener failed for %s", workspace_id)


class _Acting:
    """``WorkspaceGate.acting``: a counted piece of work, or ``WorkspaceDisabled``. Every contact
    turn goes through it, so it counts without a ticket object (``admit`` checks the same way)."""

    __slots__ = ("_gate", "_workspace_id")

    def __init__(self, gate: WorkspaceGate, workspace_id: str) -> None:
        self._gate = gate
        self._workspace_id = workspace_id

    async def __aenter__(self) -> None:
        self._gate.in_flight.add(self._workspace_id)
        error = await self._gate._refusal_of_counted(self._workspace_id)
        if error is not None:
            raise error

    async def __aexit__(self, *_: object) -> None:
        self._gate.in_flight.done(self._workspace_id)
