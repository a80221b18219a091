"""Pacing of one business number to one customer (Meta's pair rate), shared through Redis.

Meta lets a business number send one message every 6 seconds to the same WhatsApp user, with
bursts of up to 45 that borrow from the time after them; past that it answers 131056 (Meta's
throughput page; BSP pages mirroring it: dualhook.com/docs/capacity-quality-limits,
developers.whats91.com/rate-limits). A flow's few messages in a row are well inside the burst;
a loop or a storm of sends to one person is not, and is paced here before Meta refuses it.

A GCRA schedule per (workspace, number, recipient), like the throughput limiter, but the check
is *conditional*: a send that would have to wait is not given a slot at all; the caller learns
how long to wait and the send policy holds the message durably (a timer, not a sleep in the
actor's turn) until then. Time comes from the injected clock, so tests move it; the pacing is
coarse (seconds) and replicas' clocks agree far better than that.
"""

from __future__ import annotations

from redis.commands.core import AsyncScript

from server.clock import Clock
from server.redis_clients import RedisCommands, register_script

INTERVAL_SECONDS = 6.0
BURST = 45

# KEYS[1] the pair's schedule; ARGV[1] now (us), ARGV[2] interval (us), ARGV[3] tolerance (us).
# Returns 0 when the send may go now (its slot taken), else the microseconds to wait.
_TRY = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
if tat - now > tolerance then
  return math.floor(tat - tolerance - now)
end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.floor((next_tat - now) / 1000) + 1000)
return 0
"""


class PairPacer:
    def __init__(
        self,
        redis: RedisCommands,
        prefix: str,
        clock: Clock,
        interval_seconds: float = INTERVAL_SECONDS,
        burst: int = BURST,
    ) -> None:
        self._prefix = prefix + "wa:pair:"
        self._clock = clock
        self.interval_seconds = interval_seconds
        self.burst = max(1, burst)
        self._script: AsyncScript = register_script(redis, _TRY)

    async def try_send(self, number: str, recipient: str) -> float:
        """0 when a message to ``recipient`` may go now (counted), else the seconds to wait."""
        now_us = self._clock.now().timestamp() * 1_000_000
        interval_us = self.interval_seconds * 1_000_000
        wait_us = await self._script(
            keys=[f"{self._prefix}{number}:{recipient}"],
            args=[f"{now_us:.0f}", f"{interval_us:.0f}", f"{(self.burst - 1) * interval_us:.0f}"],
        )
        return max(0, int(wait_us)) / 1_000_000
