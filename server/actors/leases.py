"""Shard leases in Redis: which replica runs the actors of which contacts, fenced by an epoch.

Contacts hash into a fixed number of shards. Every replica heartbeats a membership sorted set;
each shard's owner is chosen by rendezvous hashing over the live replicas (a join or a death
moves only the shards it must). The owner holds the shard's lease key (``SET NX PX``), renews it
every ``ttl / 5`` and trusts it only until its last renewal + ttl - margin by its own timing
(measured from before the renewal was sent), so it stops committing before another replica can
take the shard. That holds only while the timing runs no slower than Redis's real time: a server
gives leases the system timing (``server/clock.py``); a test may give a virtual one to a replica
that no other replica competes with, and advance it to see a lease's trust run out. Every
acquisition takes a fencing epoch that the contact commit writes into the document: a replica
that lost its lease (paused, partitioned) can never overwrite a commit of a newer owner
(``store.contacts.cas_filter``).

A replica that should no longer own a shard (another one joined) hands it over: it stops taking
new turns for it, lets the queued ones finish (``drain``), then releases the lease. A killed
replica's leases expire after the ttl and the survivors take them on their next tick.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import zlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from redis.exceptions import RedisError

from server.cancellation import cancel_all_and_wait, cancel_and_wait
from server.clock import SystemTiming, Timing
from server.errors import Unavailable
from server.ids import ContactKey
from server.redis_clients import RedisCommands, register_script
from server.redis_keys import shard_keys_prefix, shard_lease_key

log = logging.getLogger(__name__)

# Registers the replica until ``now + ttl`` (Redis' clock: replicas' clocks need not agree), drops
# the expired ones and returns who is alive. ARGV: replica id, ttl ms.
_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 4)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

# Takes each free lease (or one still held under our replica id, e.g. after a renewal that timed
# out) with a fresh epoch; returns the epoch per lease key, 0 where another replica holds it.
# The epoch is max(last epoch + 1, Redis time in µs), not a bare INCR: a FLUSHALL or a Redis
# restart without persistence would restart INCR at 1 and fence out every later commit, whereas
# the time keeps it above every epoch already written into contacts. KEYS: epoch counter, leases.
# ARGV: replica id, ttl ms.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local mine = ARGV[1] .. '/'
local out = {}
for i = 2, #KEYS do
  local holder = redis.call('GET', KEYS[i])
  local epoch = 0
  if (not holder) or string.sub(holder, 1, #mine) == mine then
    epoch = math.max(tonumber(redis.call('GET', KEYS[1]) or '0') + 1, now)
    local text = string.format('%d', epoch)
    redis.call('SET', KEYS[1], text)
    redis.call('SET', KEYS[i], mine .. text, 'PX', ARGV[2])
  end
  out[#out + 1] = epoch
end
return out
"""

# Extends each lease still holding our token; 1 renewed, 0 lost. ARGV: ttl ms, tokens...
_RENEW = """
local out = {}
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[i + 1] then
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""

# Deletes each lease still holding our token (never another replica's). ARGV: tokens...
_RELEASE = """
local out = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[i] then
    redis.call('DEL', KEYS[i])
    out = out + 1
  end
end
return out
"""

# Deletes each lease held under our replica id, whatever its epoch: at stop, also one a tick
# cancelled mid-acquisition was granted without learning it. ARGV: replica id.
_RELEASE_MINE = """
local mine = ARGV[1] .. '/'
local out = 0
for i = 1, #KEYS do
  local holder = redis.call('GET', KEYS[i])
  if holder and string.sub(holder, 1, #mine) == mine then
    redis.call('DEL', KEYS[i])
    out = out + 1
  end
end
return out
"""


@dataclass
class Lease:
    """A shard this process holds: its token in Redis, its fencing epoch and how long to trust it."""

    shard: int
    epoch: int
    token: bytes
    valid_until: float  # on the leases' timing
    draining: bool = False


def shard_of(key: ContactKey, shard_count: int) -> int:
    """Stable across processes and restarts (``hash()`` is salted per process)."""
    return zlib.crc32(key.doc_id.encode()) % shard_count


def rendezvous_owner(shard: int, replicas: Iterable[str]) -> str | None:
    """Highest random weight: the replica whose hash with the shard is largest owns it."""
    best: tuple[int, str] | None = None
    for replica in replicas:
        digest = hashlib.blake2b(f"{replica}|{shard}".encode(), digest_size=8).digest()
        weight = (int.from_bytes(digest, "big"), replica)
        if best is None or weight > best:
            best = weight
    return best[1] if best else None


class ShardLeases:
    """One replica's view of membership and shard ownership, kept fresh by a background tick."""

    def __init__(
        self,
        redis: RedisCommands,
        prefix: str,
        replica_id: str,
        shard_count: int = 64,
        ttl_seconds: float = 5.0,
        *,
        drain: Callable[[int], Awaitable[None]] | None = None,
        on_lost: Callable[[int], None] | None = None,
        on_members: Callable[[frozenset[str]], None] | None = None,
        drain_timeout: float = 30.0,
        timing: Timing | None = None,
    ) -> None:
        """``timing`` must run no slower than real time (the system one in a server): Redis expires
        the lease keys in real time, and a lease is trusted until a deadline measured on it."""
        if "/" in replica_id:
            raise ValueError("a replica id cannot contain '/' (it separates the id from the epoch)")
        self.replica_id = replica_id
        self.shard_count = shard_count
        self.ttl = ttl_seconds
        self.renew_every = ttl_seconds / 5
        self.margin = ttl_seconds / 5
        self._redis = redis
        self._timing = timing or SystemTiming()
        # One hash slot for all (server/redis_keys.py): the scripts take the epoch with the leases.
        self._members_key = shard_keys_prefix(prefix) + "members"
        self._epoch_key = shard_keys_prefix(prefix) + "epoch"
        self._lease_keys = [shard_lease_key(prefix, n) for n in range(shard_count)]
        self._drain = drain
        self._on_lost = on_lost
        self._on_members = on_members
        self._drain_timeout = drain_timeout
        self._heartbeat = register_script(redis, _HEARTBEAT)
        self._acquire = register_script(redis, _ACQUIRE)
        self._renew = register_script(redis, _RENEW)
        self._release = register_script(redis, _RELEASE)
        self._release_mine = register_script(redis, _RELEASE_MINE)
        self._held: dict[int, Lease] = {}
        self._owners: dict[int, str] = {}
        self._live: frozenset[str] = frozenset()
        self._desired: frozenset[int] = frozenset()
        self._ticked = asyncio.Event()
        self._hurry = 0
        self._task: asyncio.Task[None] | None = None
        self._handovers: dict[int, asyncio.Task[None]] = {}

    # --- what the router and the actors ask -----------------------------------------------------

    def shard_of(self, key: ContactKey) -> int:
        return shard_of(key, self.shard_count)

    def owns(self, shard: int) -> bool:
        """Whether new turns of the shard may start here: held, trusted, not being handed over."""
        lease = self._held.get(shard)
        return lease is not None and not lease.draining and lease.valid_until > self._timing.monotonic()

    def fence(self, key: ContactKey) -> int:
        """The epoch to write with a commit of ``key``; refuses once the lease cannot be trusted."""
        shard = self.shard_of(key)
        lease = self._held.get(shard)
        if lease is None or lease.valid_until <= self._timing.monotonic():
            raise Unavailable(
                f"this server no longer holds the lease of shard {shard} (contact {key.doc_id}); retry"
            )
        return lease.epoch

    def owner_of(self, shard: int) -> str | None:
        """The replica holding the shard's lease at the last tick (None while it is free)."""
        return self._owners.get(shard)

    @property
    def live(self) -> frozenset[str]:
        return self._live

    @property
    def held(self) -> frozenset[int]:
        return frozenset(self._held)

    @property
    def desired(self) -> frozenset[int]:
        return self._desired

    @property
    def settled(self) -> bool:
        """Holds every shard rendezvous hashing gives it, and only those."""
        return all(self.owns(s) for s in self._desired) and set(self._held) <= self._desired

    async def wait_tick(self, timeout: float) -> None:
        """Until the next tick refreshed ownership (ticks come faster while someone waits)."""
        ticked = self._ticked
        self._hurry += 1
        try:
            await self._timing.wait(ticked, timeout)
        finally:
            self._hurry -= 1

    # --- life cycle ------------------------------------------------------------------------------

    async def start(self, settle_seconds: float | None = None) -> None:
        """Join and wait (bounded) until this replica holds its shards, so it can serve at once."""
        await self.tick()
        self._task = asyncio.create_task(self._loop(), name=f"shard-leases:{self.replica_id}")
        timing = self._timing
        deadline = timing.monotonic() + (self.ttl * 2 + 2 if settle_seconds is None else settle_seconds)
        while not self.settled and timing.monotonic() < deadline:
            await self.wait_tick(deadline - timing.monotonic())

    async def stop(self) -> None:
        """Release every lease and leave, so the others take the shards at once (not after a ttl)."""
        await cancel_and_wait(self._task)
        self._task = None
        # A cancelled handover still releases its shard in its ``finally``; the rest goes below.
        await cancel_all_and_wait(self._handovers.values())
        # By replica id, not by the tokens held: the tick cancelled above may have been granted
        # leases by Redis whose answer it never read.
        self._held.clear()
        try:
            async with asyncio.timeout(2):
                await self._release_mine(keys=self._lease_keys, args=[self.replica_id])
                await self._redis.zrem(self._members_key, self.replica_id)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("could not release shard leases on stop (they expire in %.0fs): %s", self.ttl, exc)

    async def _loop(self) -> None:
        while True:
            busy = self._hurry or any(lease.draining for lease in self._held.values())
            await self._timing.sleep(self.renew_every / 4 if busy else self.renew_every)
            try:
                # On the loop's real clock: it bounds Redis I/O (server/clock.py), as the ttl does.
                async with asyncio.timeout(self.ttl):
                    await self.tick()
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("shard lease tick failed: %s", exc)
            except Exception:
                log.exception("shard lease tick failed")
            self._expire()

    # --- one tick: heartbeat, renew, hand over, acquire, learn owners ---------------------------

    async def tick(self) -> None:
        ttl_ms = int(self.ttl * 1000)
        members = await self._heartbeat(keys=[self._members_key], args=[self.replica_id, ttl_ms])
        live = frozenset(m.decode() if isinstance(m, bytes) else str(m) for m in members)
        if live != self._live:
            self._live = live
            self._desired = frozenset(
                s for s in range(self.shard_count) if rendezvous_owner(s, live) == self.replica_id
            )
            if self._on_members is not None:
                self._on_members(live)
        lost = await self._renew_held(ttl_ms)
        for lease in list(self._held.values()):
            if lease.shard not in self._desired and not lease.draining:
                lease.draining = True
                self._handovers[lease.shard] = asyncio.create_task(
                    self._hand_over(lease), name=f"shard-handover:{lease.shard}"
                )
        wanted = [s for s in sorted(self._desired) if s not in self._held]
        if wanted:
            started = self._timing.monotonic()
            epochs = await self._acquire(
                keys=[self._epoch_key, *(self._lease_keys[s] for s in wanted)],
                args=[self.replica_id, ttl_ms],
            )
            for shard, epoch in zip(wanted, epochs, strict=True):
                if int(epoch):
                    token = f"{self.replica_id}/{int(epoch)}".encode()
                    self._held[shard] = Lease(shard, int(epoch), token, started + self.ttl - self.margin)
        for shard in lost:
            if shard not in self._held and self._on_lost is not None:
                self._on_lost(shard)
        await self._learn_owners()
        self._ticked.set()
        self._ticked = asyncio.Event()

    async def _renew_held(self, ttl_ms: int) -> list[int]:
        """Extend our leases; returns the shards whose lease turned out to be gone."""
        held = list(self._held.values())
        if not held:
            return []
        started = self._timing.monotonic()
        renewed = await self._renew(
            keys=[self._lease_keys[lease.shard] for lease in held],
            args=[ttl_ms, *(lease.token for lease in held)],
        )
        lost = []
        for lease, ok in zip(held, renewed, strict=True):
            if self._held.get(lease.shard) is not lease:
                continue  # handed over while we waited
            if int(ok):
                lease.valid_until = started + self.ttl - self.margin
            else:
                log.warning("lost the lease of shard %d (epoch %d)", lease.shard, lease.epoch)
                del self._held[lease.shard]
                lost.append(lease.shard)
        return lost

    async def _learn_owners(self) -> None:
        values = await self._redis.mget(self._lease_keys)
        owners: dict[int, str] = {}
        for shard, value in enumerate(values):
            if value:
                text = value.decode() if isinstance(value, bytes) else str(value)
                owners[shard] = text.rpartition("/")[0]
        self._owners = owners

    def _expire(self) -> None:
        """Leases not renewed in time are dropped locally (Redis may be unreachable)."""
        now = self._timing.monotonic()
        for lease in list(self._held.values()):
            if lease.valid_until <= now and not lease.draining:
                log.warning("the lease of shard %d expired unrenewed", lease.shard)
                del self._held[lease.shard]
                if self._on_lost is not None:
                    self._on_lost(lease.shard)

    async def _hand_over(self, lease: Lease) -> None:
        """Let the shard's queued turns finish, then release it for its new owner."""
        try:
            if self._drain is not None:
                async with asyncio.timeout(self._drain_timeout):
                    await self._drain(lease.shard)
        except Exception:
            log.exception("draining shard %d before its handover failed", lease.shard)
        finally:
            self._handovers.pop(lease.shard, None)
            if self._held.get(lease.shard) is lease:
                del self._held[lease.shard]
                try:
                    async with asyncio.timeout(2):
                        await self._release(keys=[self._lease_keys[lease.shard]], args=[lease.token])
                except (RedisError, OSError, TimeoutError) as exc:
                    log.warning("releasing shard %d failed (it expires): %s", lease.shard, exc)
