"""Per phone number throughput limit, shared by every process through Redis.

Meta caps each business number (80 messages/s by default, up to 1,000 when upgraded); going over
earns error 130429 and wasted retries. The limit must hold across replicas, so the state lives in
Redis: a GCRA schedule (the "theoretical arrival time" of the next free slot) advanced by one Lua
script call, which reserves a block of consecutive slots. Time comes from Redis's clock (one clock
for every process).

Within a process, the senders of a number queue in arrival order and one task per number (its
*pump*) reserves slots for the queue, a block of up to ``BLOCK_SECONDS`` of the rate per round
trip, and hands each slot to the next sender when it comes. Issue 19 measured the alternative,
every sender reserving its own slot and sleeping until it: a broadcast keeps hundreds of sends in
flight, so the schedule filled half a second ahead, a loaded loop woke the sleepers late, and each
late one threw its slot away and queued again at the back: three reservations per message and a
fraction of the number's rate. Now one task sleeps, a late wake-up gives up only the slots that
passed while it slept, and a block costs one round trip instead of one per message.

The pump waits for its slots on an injected ``Timing`` (``server/clock.py``): Redis gives each slot
as a delay from now, so a virtual timing paces the queue exactly as real time would, without
waiting (tests); a server uses the system one, as a slot reached early would be a send over the
limit in Redis's real time.
"""

from __future__ import annotations

import asyncio
from collections import deque

from redis.commands.core import AsyncScript

from server.clock import SystemTiming, Timing
from server.redis_clients import RedisCommands, register_script

DEFAULT_RATE = 80
# Woken later than this after a slot (a stalled event loop): give it up and use the next one.
# Sending on a late slot shifts that send; only a stall bunches sends, and then a one-second window
# holds at most rate x LATE_SLOT_SECONDS more than the limit (10%), once. 20 ms was tighter than a
# loaded loop's ordinary lag: every send threw slots away and a broadcast kept a fraction of its
# number's rate (issue 19).
LATE_SLOT_SECONDS = 0.1
MAX_RESERVATIONS = 5  # slots given up in a row for one sender: it sends on the next anyway
MAX_RATE = 1000
# Slots reserved per round trip: at most this much of the schedule ahead (50 at 1,000/s, 4 at
# 80/s), and never more than senders are waiting. Another process's block starts after it.
BLOCK_SECONDS = 0.05

# KEYS[1] the number's schedule; ARGV[1] microseconds per message; ARGV[2] burst tolerance (us);
# ARGV[3] slots to reserve (1 if absent). Returns how many microseconds until the first of them;
# the others follow it one interval apart.
_GCRA = """
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local count = tonumber(ARGV[3] or '1')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(now, tat - tolerance)
local next_tat = math.max(tat, slot) + interval * count
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.floor((next_tat - now) / 1000) + 1000)
return math.floor(slot - now)
"""


def clamp_rate(rate: float | int | None) -> float:
    """The configured messages/second, kept within what Meta offers (1..1,000; 80 when unset)."""
    value = float(rate or DEFAULT_RATE)
    return max(1.0, min(float(MAX_RATE), value))


class ThroughputLimiter:
    """``await acquire(number, rate)`` returns when this process may send one message on ``number``."""

    def __init__(
        self, redis: RedisCommands, prefix: str = "konvo:", burst: int = 0, timing: Timing | None = None
    ) -> None:
        self._redis = redis
        self.timing = timing or SystemTiming()
        self._prefix = prefix + "wa:throughput:"
        self._burst = burst  # messages allowed ahead of the steady schedule after an idle period
        self._script: AsyncScript = register_script(redis, _GCRA)
        self._queues: dict[str, _NumberQueue] = {}

    async def reserve(self, phone_number_id: str, rate: float | int | None = None, count: int = 1) -> float:
        """Reserve the next ``count`` slots; seconds until the first (0 when free now). The others
        follow it ``1/rate`` apart."""
        interval = 1_000_000 / clamp_rate(rate)
        wait_us = await self._script(
            keys=[self._prefix + phone_number_id],
            args=[f"{interval:.3f}", f"{self._burst * interval:.3f}", str(max(1, count))],
        )
        return max(0, int(wait_us)) / 1_000_000

    async def acquire(self, phone_number_id: str, rate: float | int | None = None) -> None:
        """Wait for a slot, behind this process's earlier senders on the number.

        A slot that passed while this process was stalled (a busy event loop) is given up: sending
        late on an old slot would bunch sends above the limit in the moment after the stall, while
        the other processes keep to their own slots. Raises what reserving raised (Redis down)."""
        queue = self._queues.get(phone_number_id)
        if queue is None:
            queue = self._queues[phone_number_id] = _NumberQueue(self, phone_number_id)
        await queue.wait(clamp_rate(rate))

    def _idle(self, phone_number_id: str, queue: _NumberQueue) -> None:
        if self._queues.get(phone_number_id) is queue:
            del self._queues[phone_number_id]


class _NumberQueue:
    """One number's senders in this process, in arrival order, and the pump that serves them."""

    def __init__(self, limiter: ThroughputLimiter, number: str) -> None:
        self._limiter = limiter
        self._number = number
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._rate = float(DEFAULT_RATE)
        self._pump: asyncio.Task[None] | None = None

    async def wait(self, rate: float) -> None:
        self._rate = rate  # the number's current setting: the latest sender's
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._serve(), name=f"throughput:{self._number}")
        await future  # cancelled: the pump skips it and its slot goes to the next sender

    def _waiting(self) -> int:
        while self._waiters and self._waiters[0].done():
            self._waiters.popleft()
        return len(self._waiters)

    async def _serve(self) -> None:
        skipped = 0  # slots given up in a row while the first sender waited
        try:
            while waiting := self._waiting():
                rate = self._rate
                interval = 1 / rate
                late_allowed = max(interval, LATE_SLOT_SECONDS)
                count = min(waiting, max(1, int(rate * BLOCK_SECONDS)))
                timing = self._limiter.timing
                first = timing.monotonic() + await self._limiter.reserve(self._number, rate, count)
                for slot in range(count):
                    due = first + slot * interval
                    delay = due - timing.monotonic()
                    if delay > 0:
                        await timing.sleep(delay)
                    if not self._waiting():
                        break  # the slots left go unused: nobody waits for them
                    if timing.monotonic() - due > late_allowed and skipped < MAX_RESERVATIONS:
                        skipped += 1
                        continue
                    skipped = 0
                    self._waiters.popleft().set_result(None)
        except BaseException as exc:
            error = exc if isinstance(exc, Exception) else RuntimeError("the throughput limiter stopped")
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_exception(error)
            if not isinstance(exc, Exception):
                raise
        finally:
            if not self._waiters:
                self._limiter._idle(self._number, self)
