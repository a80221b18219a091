"""Timers as arq deferred jobs (job id = timer id), fired in batches by a worker inside the server.

Redis only holds the schedule; the timer itself lives in the contact document, so a lost or
duplicated job is harmless: recovery re-enqueues missing ones, and a stale one finds nothing
(the actor drops a ``TimerFired`` whose timer is gone, and dedupes its event id).

The schedule is arq's own layout (``arq:job:<id>`` record in arq's serializer, the queue sorted
set scored by due time in ms, ``arq:in-progress:<id>`` / ``arq:retry:<id>``), so ``enqueue_job``,
``Job.status()`` and arq's own ``Worker`` (running :func:`fire_timer`) all still work on it. The
queue and the job ids carry arq's hash tag (job id ``{arq:abort}<timer id>``,
``server/redis_keys.py``), so the scripts below run on a Redis Cluster. Two
things are done differently from arq, because arq's per-job round trips (WATCH/MULTI to enqueue
and again to start, one pipeline to finish) and its one-task-per-job model were what drowned
10,000 timers due in the same second (issue 8, P4/P6):

- **enqueue in batches**: :meth:`ArqTimerScheduler.schedule_many` arms a few hundred timers
  with one Lua call, skipping ids already queued, running or with a result (what
  ``enqueue_job`` checks);
- **claim in batches, bounded**: :class:`TimerWorker` claims up to ``batch_size`` due jobs per
  Lua call and never holds more than ``max_in_flight`` turns at once. A claim sets arq's
  in-progress key and pushes the job's score ``claim_seconds`` ahead (a visibility timeout):
  if this process dies, the job is due again after that and another worker runs it. A job is
  acked (removed) only once the actor's turn is committed; ``Unavailable`` re-schedules it
  one second later; any other error backs off and retries up to ``max_tries``. Nothing waits
  on a job timeout: the backlog waits in Redis, not in thousands of blocked tasks.

A timer of a workspace an operator disabled is **held**: its turn is refused
(``WorkspaceDisabled``), so its job is removed while the timer stays in its contact document;
enabling the workspace re-arms every timer of it (``server/actors/recovery.py``), and one that
fell due meanwhile fires then.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol, TypedDict

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix, retry_key_prefix
from arq.jobs import deserialize_job_raw, serialize_job
from arq.utils import to_unix_ms
from arq.worker import Retry

from server.actors.events import TimerFired, TurnResult
from server.clock import Clock, SystemClock, SystemTiming, Timing
from server.documents import TimerDoc
from server.errors import Unavailable, WorkspaceDisabled
from server.ids import ContactKey
from server.redis_clients import RedisCommands
from server.redis_keys import arq_job_id

log = logging.getLogger(__name__)

FIRE_TIMER = "fire_timer"
MAX_TRIES = 20
RETRY_KEY_SECONDS = 88400  # as arq's worker

# KEYS: queue, then (job key, result key) per timer; ARGV: (job id, score, expiry ms, record) per timer.
_ENQUEUE = """
local added = 0
local n = (#KEYS - 1) / 2
for i = 1, n do
  local job_key, result_key = KEYS[2 * i], KEYS[2 * i + 1]
  if redis.call('exists', job_key, result_key) == 0 then
    local a = (i - 1) * 4
    redis.call('psetex', job_key, ARGV[a + 3], ARGV[a + 4])
    redis.call('zadd', KEYS[1], ARGV[a + 2], ARGV[a + 1])
    added = added + 1
  end
end
return added
"""

# KEYS: queue; ARGV: now ms, limit, claim ms, in-progress prefix, job prefix, retry prefix, retry ttl.
# Returns (job id, record or false, try) triples for the due jobs this call claimed.
_CLAIM = """
local due = redis.call('zrangebyscore', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
local until_ms = tonumber(ARGV[1]) + tonumber(ARGV[3])
for _, id in ipairs(due) do
  if redis.call('set', ARGV[4] .. id, '1', 'NX', 'PX', ARGV[3]) then
    redis.call('zadd', KEYS[1], 'XX', until_ms, id)
    local try = redis.call('incr', ARGV[6] .. id)
    redis.call('expire', ARGV[6] .. id, ARGV[7])
    out[#out + 1] = id
    out[#out + 1] = redis.call('get', ARGV[5] .. id)
    out[#out + 1] = try
  end
end
return out
"""


class ArmedTimer(TypedDict):
    """What arming a timer's job needs of it: its id and when it is due. A ``TimerDoc`` is one;
    so is a legacy job being moved, of which nothing else is known."""

    id: str
    due_at: datetime


class TimerActors(Protocol):
    """What firing needs of the actor system: queue an event, get its committed turn."""

    def tell(self, key: ContactKey, event: TimerFired) -> Awaitable[TurnResult]: ...


def _now_ms(clock: Clock) -> int:
    """Scores are due times in ms from the injected clock, the one the due times were set by."""
    return to_unix_ms(clock.now())


class ArqTimerScheduler:
    def __init__(self, pool: ArqRedis, queue_name: str, clock: Clock | None = None) -> None:
        self._pool = pool
        self.queue_name = queue_name
        self._clock = clock or SystemClock()
        self._enqueue = pool.register_script(_ENQUEUE)

    async def schedule(self, key: ContactKey, timer: TimerDoc) -> None:
        """Enqueue once: an id already queued or running is left alone (as ``enqueue_job``)."""
        await self.schedule_many([(key, timer)])

    async def schedule_many(self, timers: Iterable[tuple[ContactKey, ArmedTimer]]) -> int:
        """Arm every timer not queued yet with one round trip; returns how many were new."""
        keys: list[str] = [self.queue_name]
        args: list[Any] = []
        now_ms = _now_ms(self._clock)
        for key, timer in timers:
            job_id = arq_job_id(timer["id"])
            score = to_unix_ms(timer["due_at"]) if isinstance(timer["due_at"], datetime) else now_ms
            record = serialize_job(
                FIRE_TIMER,
                # jobs before identities held the phone in the place of the local id
                (
                    key.workspace_id,
                    key.local_id,
                    timer["id"],
                ),  # jobs before identities held the phone: same place
                {},
                None,
                now_ms,
                serializer=self._pool.job_serializer,
            )
            expires_ms = max(score - now_ms, 0) + self._pool.expires_extra_ms
            keys += [job_key_prefix + job_id, result_key_prefix + job_id]
            args += [job_id, score, expires_ms, record]
        if not args:
            return 0
        return int(await self._enqueue(keys=keys, args=args))

    def read_job(self, record: bytes) -> tuple[ContactKey, str] | None:
        """The contact and timer id of a job record (None for another function's)."""
        function, args, _, _, _ = deserialize_job_raw(record, deserializer=self._pool.job_deserializer)
        if function != FIRE_TIMER:
            return None
        workspace_id, phone, timer_id = args
        return ContactKey(workspace_id, phone), timer_id


async def migrate_legacy_timers(
    redis: RedisCommands, legacy_queue: str, scheduler: ArqTimerScheduler, batch_size: int = 500
) -> int:
    """Move timers queued before keys were hash-tagged (queue ``konvo:<db>:timers``, job id = timer
    id) into the tagged layout, due when they were; returns how many. Runs with every recovery
    pass, so a replica of the older version still running in a rolling upgrade loses nothing: what
    it queues is moved within one pass (a timer it fires meanwhile fires again as a no-op).
    ``redis`` is the commands client: the legacy keys are in slots of their own."""
    moved = 0
    while True:
        entries = await redis.zrange(legacy_queue, 0, batch_size - 1, withscores=True)
        if not entries:
            return moved
        ids = [member.decode() if isinstance(member, bytes) else str(member) for member, _ in entries]
        async with redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.get(job_key_prefix + job_id)
            records = await pipe.execute()
        timers: list[tuple[ContactKey, ArmedTimer]] = []
        for (_, score), record in zip(entries, records, strict=True):
            try:
                found = scheduler.read_job(record) if record else None
            except Exception:
                log.warning("legacy timer job %r cannot be read; dropped (recovery re-arms it)", record)
                found = None
            if found is not None:
                key, timer_id = found
                timers.append((key, {"id": timer_id, "due_at": datetime.fromtimestamp(score / 1000, UTC)}))
        await scheduler.schedule_many(timers)
        async with redis.pipeline(transaction=False) as pipe:
            pipe.zrem(legacy_queue, *ids)
            for job_id in ids:
                pipe.delete(job_key_prefix + job_id)
                pipe.delete(in_progress_key_prefix + job_id)
                pipe.delete(retry_key_prefix + job_id)
            await pipe.execute()
        moved += len(timers)
        log.info("moved %d timers queued under the untagged layout", len(timers))


async def fire_timer(ctx: dict[str, Any], workspace_id: str, local_id: str, timer_id: str) -> str:
    """The job function, for arq's own ``Worker`` (``TimerWorker`` does the same in batches)."""
    actors: TimerActors = ctx["actors"]
    try:
        result = await actors.tell(ContactKey(workspace_id, local_id), TimerFired(timer_id))
    except Unavailable as exc:
        raise Retry(defer=1) from exc
    except WorkspaceDisabled:
        return "held"  # re-armed from its contact when the workspace is enabled
    return "stale" if not result.changed else "fired"


class TimerWorker:
    """Fires due timers of one arq queue: claim a batch, tell the actors, ack what committed."""

    def __init__(
        self,
        pool: ArqRedis,
        queue_name: str,
        actors: TimerActors,
        poll_seconds: float,
        *,
        batch_size: int = 200,
        max_in_flight: int = 500,
        claim_seconds: float = 60.0,
        max_tries: int = MAX_TRIES,
        stop_grace_seconds: float = 5.0,
        clock: Clock | None = None,
        timing: Timing | None = None,
    ) -> None:
        self._clock = clock or SystemClock()
        self._timing = timing or SystemTiming()  # the poll and the pause after a failed one
        self._pool = pool
        self.queue_name = queue_name
        self._actors = actors
        self._poll = poll_seconds
        self._batch = max(1, batch_size)
        self._max_in_flight = max(1, max_in_flight)
        self._claim_ms = int(claim_seconds * 1000)
        self._max_tries = max_tries
        self._stop_grace = stop_grace_seconds
        self._claim = pool.register_script(_CLAIM)
        # job id -> the turn's future; what runtime.stop waits for (as arq's ``Worker.tasks``).
        self.tasks: dict[str, asyncio.Future[TurnResult]] = {}
        self._done: list[tuple[str, int, BaseException | None]] = []
        self._wake = asyncio.Event()
        self.fired = 0  # jobs acked after their turn (a stale timer's no-op turn included)
        self.retried = 0
        self.dropped = 0
        self.held = 0  # timers of disabled workspaces, taken off the queue until re-enabled

    async def main(self) -> None:
        try:
            while True:
                try:
                    await self._step()
                except Exception:  # Redis gone for a moment: nothing is lost, claims expire
                    log.exception("timer worker: polling failed; retrying in 1 s")
                    await self._timing.sleep(1.0)
        finally:
            await asyncio.shield(self._stop())

    async def _step(self) -> None:
        """Settle what finished, claim what is due and fits, else wait for a turn or the poll."""
        await self._settle()
        want = min(self._max_in_flight - len(self.tasks), self._batch)
        # Claim when a good share of a batch is free (or nothing runs): not one by one.
        if want > 0 and (want * 4 >= min(self._batch, self._max_in_flight) or not self.tasks):
            if await self._claim_due(want) == want:
                return  # more may be due: claim again at once
        self._wake.clear()
        if self._done:
            return
        # Never wait_for (3.11's drops a cancel that lands as the wake fires, and this loop would
        # then poll on forever through the server's stop): ``Timing.wait`` keeps the cancel.
        await self._timing.wait(self._wake, self._poll)

    async def _claim_due(self, limit: int) -> int:
        now_ms = _now_ms(self._clock)
        found = await self._claim(
            keys=[self.queue_name],
            args=[
                now_ms,
                limit,
                self._claim_ms,
                in_progress_key_prefix,
                job_key_prefix,
                retry_key_prefix,
                RETRY_KEY_SECONDS,
            ],
        )
        for i in range(0, len(found), 3):
            raw_id, record, tries = found[i], found[i + 1], int(found[i + 2])
            job_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            self._start(job_id, record, tries)
        return len(found) // 3

    def _start(self, job_id: str, record: bytes | None, tries: int) -> None:
        if not record:
            log.warning("timer job %s has no record (expired); dropped", job_id)
            self._done.append((job_id, tries, _Drop()))
            return
        try:
            function, args, _, _, _ = deserialize_job_raw(record, deserializer=self._pool.job_deserializer)
            if function != FIRE_TIMER:
                raise ValueError(f"unknown function {function!r}")
            workspace_id, local_id, timer_id = args
        except Exception:
            log.exception("timer job %s cannot be read; dropped", job_id)
            self._done.append((job_id, tries, _Drop()))
            return
        if tries > self._max_tries:
            log.warning("timer %s failed %d times; dropped (recovery re-arms it)", job_id, tries - 1)
            self._done.append((job_id, tries, _Drop()))
            return
        try:
            future = asyncio.ensure_future(
                self._actors.tell(ContactKey(workspace_id, local_id), TimerFired(timer_id))
            )
        except Exception as exc:  # e.g. Unavailable: the actor system is stopping
            self._done.append((job_id, tries, exc))
            return
        self.tasks[job_id] = future
        future.add_done_callback(functools.partial(self._finished, job_id, tries))

    def _finished(self, job_id: str, tries: int, future: asyncio.Future[TurnResult]) -> None:
        self.tasks.pop(job_id, None)
        error = future.exception() if not future.cancelled() else asyncio.CancelledError()
        self._done.append((job_id, tries, error))
        self._wake.set()

    async def _settle(self) -> None:
        """Ack committed turns, re-schedule failed ones: one pipeline for all that finished."""
        if not self._done:
            return
        done, self._done = self._done, []
        try:
            await self._write_outcomes(done)
        except BaseException:
            self._done = done + self._done  # settle them on the next pass
            raise

    async def _write_outcomes(self, done: list[tuple[str, int, BaseException | None]]) -> None:
        now_ms = _now_ms(self._clock)
        fired = dropped = retried = held = 0
        failed: list[str] = []
        async with self._pool.pipeline(transaction=False) as pipe:
            for job_id, tries, error in done:
                if error is None or isinstance(error, _Drop | WorkspaceDisabled):
                    if error is None:
                        fired += 1
                    elif isinstance(error, WorkspaceDisabled):
                        held += 1  # kept in its contact; re-armed when the workspace is enabled
                    else:
                        dropped += 1
                    pipe.zrem(self.queue_name, job_id)
                    pipe.delete(
                        job_key_prefix + job_id, in_progress_key_prefix + job_id, retry_key_prefix + job_id
                    )
                    continue
                retried += 1
                if isinstance(error, Unavailable | asyncio.CancelledError):
                    delay_ms = 1000
                else:
                    delay_ms = min(60_000, 1000 * 2 ** min(tries, 6))
                    failed.append(f"{job_id} ({type(error).__name__}: {error}; retry in {delay_ms} ms)")
                pipe.zadd(self.queue_name, {job_id: now_ms + delay_ms}, xx=True)
                pipe.delete(in_progress_key_prefix + job_id)
            await pipe.execute()
        self.fired += fired
        self.dropped += dropped
        self.retried += retried
        self.held += held
        if held:
            log.info("%d timer(s) of disabled workspaces held until they are enabled again", held)
        if failed:  # one line per pass, not one per timer: a store outage must not flood the log
            log.warning("%d timer turns failed and will be retried, e.g. %s", len(failed), failed[0])

    async def _stop(self) -> None:
        """Wait briefly for turns in flight, ack them, and hand the rest back to the queue."""
        if self.tasks:
            await asyncio.wait(list(self.tasks.values()), timeout=self._stop_grace)
        for job_id in list(self.tasks):
            self._done.append((job_id, 0, Unavailable("stopping")))
            self.tasks.pop(job_id, None)
        with contextlib.suppress(Exception):
            await self._settle()


class _Drop(Exception):
    """A job that cannot run (no record, unknown function, too many tries): removed, not retried."""
