"""How many WebSockets one API key holds, counted across every server process through Redis.

Counted across processes because a client behind a load balancer reaches all of them: a per
process count would allow the limit once per replica. Each open socket holds a slot, a member
of the key's sorted set scored with its expiry (Redis' clock, so replicas' clocks need not
agree). A process renews its slots every ``ttl / 3`` and frees one when its socket closes; the
slots of a process that died expire after ``ttl``, so a crash leaks capacity for one ttl at most.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from server.clock import SystemTiming, Timing
from server.redis_clients import RedisCommands, register_script

log = logging.getLogger(__name__)

SLOT_TTL_SECONDS = 60.0

# Drops expired slots, then takes one if fewer than the limit are held. KEYS: the key's set.
# ARGV: slot id, limit, ttl ms. Returns 1 when taken, else 0.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
return 1
"""

# Pushes back the expiry of slots still in use. KEYS: sets; ARGV: ttl ms, then one slot per key.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], now + tonumber(ARGV[1]), ARGV[i + 1])
  redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[1]) * 2)
end
return #KEYS
"""


class SocketSlots:
    def __init__(
        self,
        redis: RedisCommands,
        prefix: str,
        limit: int,
        ttl_seconds: float = SLOT_TTL_SECONDS,
        timing: Timing | None = None,
    ) -> None:
        """``timing`` paces the renewals of slots Redis expires in real time: it must run no slower
        than real time (server/clock.py)."""
        self._redis = redis
        self._timing = timing or SystemTiming()
        self._prefix = prefix
        self.limit = limit
        self._ttl_ms = int(ttl_seconds * 1000)
        self._acquire = register_script(redis, _ACQUIRE)
        self._renew = register_script(redis, _RENEW)
        self._held: dict[str, str] = {}  # slot id -> the Redis key of its API key

    async def acquire(self, key_id: str) -> str | None:
        """A slot for one more socket of ``key_id``, or None when the key holds ``limit`` already."""
        slot = uuid.uuid4().hex
        redis_key = self._prefix + key_id
        taken = await self._acquire(keys=[redis_key], args=[slot, self.limit, self._ttl_ms])
        if not int(taken):
            return None
        self._held[slot] = redis_key
        return slot

    async def release(self, slot: str) -> None:
        redis_key = self._held.pop(slot, None)
        if redis_key is not None:
            await self._redis.zrem(redis_key, slot)

    async def renew(self) -> None:
        """Keep this process's slots alive (called every ttl / 3 by ``keep_alive``)."""
        held = list(self._held.items())
        if held:
            await self._renew(keys=[k for _, k in held], args=[self._ttl_ms, *(s for s, _ in held)])

    async def keep_alive(self) -> None:
        while True:
            await self._timing.sleep(self._ttl_ms / 3000)
            try:
                await self.renew()
            except Exception as exc:  # Redis is away: renew next time; slots outlive a short outage
                log.warning("could not renew WebSocket slots: %s", type(exc).__name__)

    def start(self) -> asyncio.Task[None]:
        return asyncio.create_task(self.keep_alive(), name="websocket-slots")
