"""A small in-process cache whose entries expire: for what every turn or send asks of the store.

Workspace settings (fields, channels, trigger rules, flows...) are read by nearly every turn, and
change rarely. Each entry is trusted for ``ttl_seconds``; a change made in this process calls
``forget`` (after its write), other processes see it within the ttl. When an entry is missing
or expired, one load goes to the store and concurrent askers share it, so an expiry under load
is one read, not one per caller. A load that began before a ``forget`` still answers its askers
but is not kept: it may have read what the change replaced.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from server.clock import SystemTiming, Timing

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ExpiringCache(Generic[K, V]):
    def __init__(self, ttl_seconds: float, max_entries: int = 10_000, timing: Timing | None = None) -> None:
        self.ttl = ttl_seconds
        self._timing = timing or SystemTiming()
        self._max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}
        self._loading: dict[K, asyncio.Future[V]] = {}
        self._generation = 0  # bumped by ``forget``

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """The cached value of ``key``, or what ``load()`` returns (shared with concurrent askers)."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] > self._timing.monotonic():
            return entry[1]
        loading = self._loading.get(key)
        if loading is None:
            loading = self._loading[key] = asyncio.ensure_future(self._load(key, load, self._generation))
        return await asyncio.shield(loading)  # a cancelled asker does not cancel the others' load

    def forget(self, key: K | None = None) -> None:
        """Drop ``key`` (every entry when None); loads in flight now are not kept."""
        self._generation += 1
        self._loading.clear()
        if key is None:
            self._entries.clear()
        else:
            self._entries.pop(key, None)

    async def _load(self, key: K, load: Callable[[], Awaitable[V]], generation: int) -> V:
        try:
            value = await load()
            if generation == self._generation:
                if len(self._entries) >= self._max_entries:
                    self._entries.clear()  # rarely reached: many workspaces; cheaper than an LRU
                self._entries[key] = (self._timing.monotonic() + self.ttl, value)
            return value
        finally:
            if generation == self._generation:
                self._loading.pop(key, None)
