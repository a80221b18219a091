"""Per phone number throughput limit, shared by every process through Redis.

Meta caps each business number (80 messages/s by default, up to 1,000 when upgraded); going over
earns error 130429 and wasted retries. The limit must hold across replicas, so the state lives in
Redis: a GCRA schedule (the "theoretical arrival time" of the next free slot) advanced by one
Lua script call per message. Each caller *reserves* its slot and sleeps until then, so the cost
is one round trip per send whatever the contention, callers are served in arrival order, and
time comes from Redis's clock (one clock for every process).
"""

from __future__ import annotations

import asyncio
import time

from redis.commands.core import AsyncScript

from server.redis_clients import RedisCommands, register_script

DEFAULT_RATE = 80
# Woken later than this after a slot (a stalled event loop): give it up and reserve a fresh one.
# Sending on a late slot shifts that send; only a stall bunches sends, and then a one-second window
# holds at most rate x LATE_SLOT_SECONDS more than the limit (10%), once. 20 ms was tighter than a
# loaded loop's ordinary lag: every send threw slots away and a broadcast kept a fraction of its
# number's rate (issue 19).
LATE_SLOT_SECONDS = 0.1
MAX_RESERVATIONS = 5  # a process stalled this often in a row sends anyway rather than starve
MAX_RATE = 1000

# KEYS[1] the number's schedule; ARGV[1] microseconds per message; ARGV[2] burst tolerance (us).
# Returns how many microseconds the caller waits before its slot.
_GCRA = """
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(now, tat - tolerance)
local next_tat = math.max(tat, slot) + interval
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.floor((next_tat - now) / 1000) + 1000)
return math.floor(slot - now)
"""


def clamp_rate(rate: float | int | None) -> float:
    """The configured messages/second, kept within what Meta offers (1..1,000; 80 when unset)."""
    value = float(rate or DEFAULT_RATE)
    return max(1.0, min(float(MAX_RATE), value))


class ThroughputLimiter:
    """``await acquire(number, rate)`` returns when this process may send one message on ``number``."""

    def __init__(self, redis: RedisCommands, prefix: str = "konvo:", burst: int = 0) -> None:
        self._redis = redis
        self._prefix = prefix + "wa:throughput:"
        self._burst = burst  # messages allowed ahead of the steady schedule after an idle period
        self._script: AsyncScript = register_script(redis, _GCRA)

    async def reserve(self, phone_number_id: str, rate: float | int | None = None) -> float:
        """Reserve the next slot; seconds until it (0 when free now)."""
        interval = 1_000_000 / clamp_rate(rate)
        wait_us = await self._script(
            keys=[self._prefix + phone_number_id], args=[f"{interval:.3f}", f"{self._burst * interval:.3f}"]
        )
        return max(0, int(wait_us)) / 1_000_000

    async def acquire(self, phone_number_id: str, rate: float | int | None = None) -> None:
        """Wait for a slot. A slot that passed while this process was stalled (a busy event loop) is
        given up and another reserved: sending late on an old slot would bunch sends above the limit
        in the moment after the stall, while the other processes keep to their own slots."""
        late_allowed = max(1 / clamp_rate(rate), LATE_SLOT_SECONDS)
        for _ in range(MAX_RESERVATIONS):
            wait = await self.reserve(phone_number_id, rate)
            due = time.monotonic() + wait
            if wait > 0:
                await asyncio.sleep(wait)
            if time.monotonic() - due <= late_allowed:
                return
