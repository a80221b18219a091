"""Whether a workspace may act now, asked by API keys, webhooks and every contact turn.

An operator disables a workspace (or starts deleting it): from then on its keys are refused
(``WORKSPACE_DISABLED``), its webhooks answered 410 and its turns refused, so its timers are held
(``server/actors/timers.py`` parks them; enabling re-arms them from the contacts). Every turn asks,
so the answer is cached per process for ``ttl_seconds``; a change is announced through Redis and
every process (this one at once) forgets the workspace's cached settings and closes its
WebSockets, so the cache bounds how late a process learns only when that message is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from server.errors import WorkspaceDisabled
from server.expiring import ExpiringCache
from server.pubsub import RedisPubSub
from server.store.workspaces import ACTIVE, DELETING, DISABLED, WorkspaceRepository

log = logging.getLogger(__name__)

CHANGED_TOPIC = "workspaces:changed"
TTL_SECONDS = 5.0

# What changed: its settings, or its status (``active``, ``disabled``, ``deleting``, ``deleted``).
SETTINGS = "settings"
DELETED = "deleted"
STOPPED = frozenset({DISABLED, DELETING, DELETED})  # its keys, webhooks and sockets are refused

# (workspace id, what changed); called synchronously on every process.
Listener = Callable[[str, str], None]


def refusal(workspace_id: str, status: str | None) -> WorkspaceDisabled | None:
    """The error a disabled or deleting workspace's requests get; None when it may act."""
    if status == DISABLED:
        return WorkspaceDisabled(
            "this workspace is disabled by the server's operator: its API keys, webhooks and flows are "
            "paused until it is enabled again",
            workspaceId=workspace_id,
        )
    if status == DELETING:
        return WorkspaceDisabled("this workspace is being deleted", workspaceId=workspace_id)
    return None


class WorkspaceGate:
    def __init__(
        self, workspaces: WorkspaceRepository, pubsub: RedisPubSub, ttl_seconds: float = TTL_SECONDS
    ) -> None:
        self._workspaces = workspaces
        self._pubsub = pubsub
        self._statuses: ExpiringCache[str, str | None] = ExpiringCache(ttl_seconds)
        self._listeners: list[Listener] = []

    async def status(self, workspace_id: str) -> str | None:
        """``active``, ``disabled`` or ``deleting``; None when there is no such workspace document
        (contacts of workspaces made by code before documents were required act as active)."""
        return await self._statuses.get(workspace_id, lambda: self._workspaces.status(workspace_id))

    async def check(self, workspace_id: str) -> None:
        """Raise ``WorkspaceDisabled`` unless the workspace may act."""
        error = refusal(workspace_id, await self.status(workspace_id))
        if error is not None:
            raise error

    async def may_act(self, workspace_id: str) -> bool:
        return await self.status(workspace_id) in (ACTIVE, None)

    def on_change(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def changed(self, workspace_id: str, change: str) -> None:
        """After the store has the change (``SETTINGS`` or the new status): act on it here now, and
        tell every other process."""
        self._apply(workspace_id, change)
        try:
            await self._pubsub.publish(CHANGED_TOPIC, {"workspace_id": workspace_id, "change": change})
        except RedisError as exc:  # the store has it: other processes' caches expire in ttl
            log.warning(
                "workspace %s change not published (%s); other processes see it within %ss",
                workspace_id,
                type(exc).__name__,
                self._statuses.ttl,
            )

    def start(self) -> None:
        """Listen for changes other processes announce (registered before any is published)."""
        self._pubsub.on(CHANGED_TOPIC, self._heard)

    def _heard(self, payload: dict[str, Any]) -> None:
        workspace_id, change = payload.get("workspace_id"), payload.get("change")
        if isinstance(workspace_id, str) and isinstance(change, str):
            self._apply(workspace_id, change)

    def _apply(self, workspace_id: str, change: str) -> None:
        self._statuses.forget(workspace_id)
        for listener in self._listeners:
            try:
                listener(workspace_id, change)
            except Exception:
                log.exception("a workspace-change listener failed for %s", workspace_id)
