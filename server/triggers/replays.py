"""Refusing a signed webhook request seen before: one Redis key per signature, for the tolerance window.

A timestamped signature is valid for ``TOLERANCE_SECONDS`` either side of its time; the key
lives a little longer than that whole window, so a captured request is refused for as long as
its signature would pass. ``claim`` is one ``SET NX EX``: replicas sharing Redis refuse it alike.
A request that was not accepted (store down, flow paused, bad payload) gives its claim back,
so the sender's identical retry is not mistaken for a replay.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from server.redis_clients import RedisCommands
from server.triggers.signatures import TOLERANCE_SECONDS

log = logging.getLogger(__name__)

KEPT_SECONDS = 2 * TOLERANCE_SECONDS + 60


class ReplayGuard:
    def __init__(self, redis: RedisCommands, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    async def claim(self, key: str) -> bool:
        """True the first time ``key`` is seen inside the window; raises ``RedisError`` if Redis is away."""
        return bool(await self._redis.set(self._prefix + key, 1, nx=True, ex=KEPT_SECONDS))

    async def release(self, key: str) -> None:
        try:
            await self._redis.delete(self._prefix + key)
        except RedisError as exc:  # the sender's retry then waits out the window or re-signs
            log.warning("could not release webhook signature claim: %s", exc)
