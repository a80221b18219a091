"""Whether an API key still works, asked by every WebSocket operation, and revocation everywhere.

A WebSocket authenticates once, at ``connection_init``, and may then live for hours. So each
operation on it asks ``is_live`` again: answered from a per-process cache (a key confirmed live
less than ``recheck_seconds`` ago, one store read otherwise). ``revoke`` marks the key dead here
and publishes it through Redis; every process (this one included) then calls the callbacks its
sockets registered with ``watch``, which stop their operations and close them (4403).

Revocations are handled synchronously as pub/sub delivers them: an event published after the
revocation (a contact update) reaches a subscription only after its operations were cancelled,
so nothing streams past a revoke. Should the message be lost (a pub/sub reconnect), a loop
re-reads every watched key from the store each ``recheck_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from server.clock import SystemTiming, Timing
from server.expiring import ExpiringCache
from server.pubsub import RedisPubSub
from server.store.workspaces import WorkspaceRepository

log = logging.getLogger(__name__)

REVOKED_TOPIC = "api-keys:revoked"
MAX_REMEMBERED = 100_000  # revoked key ids kept in memory (they never come back to life)

REVOKED_REASON = "the API key was revoked"

OnRevoked = Callable[[str], None]  # called with the reason the socket is closed for


class KeyGuard:
    def __init__(
        self,
        workspaces: WorkspaceRepository,
        pubsub: RedisPubSub,
        recheck_seconds: float,
        timing: Timing | None = None,
    ) -> None:
        self._workspaces = workspaces
        self._pubsub = pubsub
        self.recheck_seconds = recheck_seconds
        self._timing = timing or SystemTiming()  # the sweep's period and the cache's
        self._live: ExpiringCache[tuple[str, str], bool] = ExpiringCache(recheck_seconds, timing=self._timing)
        self._revoked: dict[str, None] = {}  # insertion-ordered set
        self._watchers: dict[str, set[OnRevoked]] = {}
        self._workspace_keys: dict[str, set[str]] = {}  # workspace -> watched key ids

    async def is_live(self, workspace_id: str, key_id: str) -> bool:
        """True while the key is not revoked (as known here now, or read at most recheck_seconds ago)."""
        if key_id in self._revoked:
            return False

        async def read() -> bool:
            found = await self._workspaces.get_key(workspace_id, key_id)
            return found is not None and found.get("revoked_at") is None

        if not await self._live.get((workspace_id, key_id), read):
            self._mark_revoked(key_id)
        return key_id not in self._revoked

    def watch(
        self, key_id: str, on_revoked: OnRevoked, workspace_id: str | None = None
    ) -> Callable[[], None]:
        """Call ``on_revoked`` (synchronously, once, with the reason) when the key is revoked or its
        workspace stops (``close_workspace``); returns the function that stops watching."""
        self._watchers.setdefault(key_id, set()).add(on_revoked)
        if workspace_id is not None:
            self._workspace_keys.setdefault(workspace_id, set()).add(key_id)

        def unwatch() -> None:
            watchers = self._watchers.get(key_id)
            if watchers is not None:
                watchers.discard(on_revoked)
                if not watchers:
                    del self._watchers[key_id]
            if workspace_id is not None and key_id not in self._watchers:
                keys = self._workspace_keys.get(workspace_id)
                if keys is not None:
                    keys.discard(key_id)
                    if not keys:
                        del self._workspace_keys[workspace_id]

        return unwatch

    def close_workspace(self, workspace_id: str, reason: str) -> int:
        """Close this process's sockets of the workspace's keys (disabled or deleted); the keys are
        not marked revoked, as enabling the workspace again brings them back."""
        closed = 0
        for key_id in self._workspace_keys.pop(workspace_id, set()):
            closed += self._notify(key_id, reason)
        if closed:
            log.info("workspace %s stopped: closed its %d WebSocket(s) here", workspace_id, closed)
        return closed

    async def revoke(self, workspace_id: str, key_id: str) -> None:
        """After the store marked the key revoked: act on it here at once, and tell every process."""
        self._mark_revoked(key_id)
        try:
            await self._pubsub.publish(REVOKED_TOPIC, {"workspace_id": workspace_id, "key_id": key_id})
        except RedisError as exc:  # the store has it: other processes' sweeps find it
            log.warning(
                "revocation of API key %s not published (%s); other processes see it within %ss",
                key_id,
                type(exc).__name__,
                self.recheck_seconds,
            )

    def start(self) -> asyncio.Task[None]:
        """Listen for revocations (registered before this returns, so none published after is
        missed) and start the sweep loop."""
        self._pubsub.on(REVOKED_TOPIC, self._heard)
        return asyncio.create_task(self._sweep_periodically(), name="api-key-guard")

    def _heard(self, payload: dict[str, Any]) -> None:
        key_id = payload.get("key_id")
        if isinstance(key_id, str):
            self._mark_revoked(key_id)

    async def _sweep_periodically(self) -> None:
        while True:
            await self._timing.sleep(self.recheck_seconds)
            await self.sweep()

    async def sweep(self) -> None:
        """Re-read the keys this process has sockets for; act on any revoked meanwhile."""
        watched = list(self._watchers)
        if not watched:
            return
        try:
            live = await self._workspaces.live_key_ids(watched)
        except Exception as exc:  # the store is down: the next sweep tries again
            log.warning("could not re-check API keys of open WebSockets: %s", type(exc).__name__)
            return
        for key_id in watched:
            if key_id not in live:
                self._mark_revoked(key_id)

    def _mark_revoked(self, key_id: str) -> None:
        if key_id not in self._revoked:
            self._revoked[key_id] = None
            if len(self._revoked) > MAX_REMEMBERED:
                del self._revoked[next(iter(self._revoked))]  # the store still says so when asked
        closed = self._notify(key_id, REVOKED_REASON)
        if closed:
            log.info("API key %s revoked: closed its %d WebSocket(s) here", key_id, closed)

    def _notify(self, key_id: str, reason: str) -> int:
        watchers = self._watchers.pop(key_id, set())
        for on_revoked in watchers:
            try:
                on_revoked(reason)
            except Exception:
                log.exception("closing a WebSocket of a stopped key failed")
        return len(watchers)
