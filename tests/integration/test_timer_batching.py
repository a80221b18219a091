"""Timers armed in batches by recovery and fired in batches by the timer worker, on real Redis.

The contact document is the truth: re-arming is idempotent, a job of a stale timer changes
nothing, a job whose turn never committed (crash) runs again, ``Unavailable`` is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from arq.constants import in_progress_key_prefix, job_key_prefix, retry_key_prefix
from arq.jobs import deserialize_job_raw, serialize_job
from arq.worker import Worker, func

from server.actors.events import TimerFired, TurnResult
from server.actors.recovery import recover
from server.actors.timers import FIRE_TIMER, TimerWorker, fire_timer
from server.clock import VirtualTiming
from server.config import Settings
from server.errors import Unavailable
from server.ids import ContactKey
from server.operations import contacts as contact_ops
from server.operations import flows as flow_ops
from server.redis_keys import arq_job_id, legacy_timer_queue
from server.runtime import Runtime
from tests.support.contacts import key_of
from tests.support.graphql import eventually
from tests.support.timing import WatchedTiming, advance_until, asleep, until

WORKSPACE = "ws_timers"
FLOW = {
    "name": "Still there?",
    "start": "ask",
    "nodes": [
        {
            "id": "ask",
            "type": "message",
            "text": "¿Sigues ahí?",
            "on_reply": "thanks",
            "no_reply": {"after": "1h", "next": None},
        },
        {"id": "thanks", "type": "message", "text": "¡Gracias!", "next": None},
    ],
}


@pytest.fixture
async def quiet(fast_settings: Settings) -> AsyncIterator[Runtime]:
    """A runtime without its own timer worker or periodic recovery: each test drives them."""
    runtime = Runtime(
        fast_settings.model_copy(update={"start_timer_worker": False, "recovery_interval_seconds": 3600.0})
    )
    await runtime.start()
    await runtime.workspaces.ensure(WORKSPACE, "Timers", "Europe/Madrid", runtime.clock.now())
    try:
        yield runtime
    finally:
        await runtime.stop()


async def waiting_contacts(runtime: Runtime, count: int, due_in: timedelta) -> list[dict[str, Any]]:
    """``count`` contacts each waiting on a no-reply timer, its due time moved to now + ``due_in``.

    The schedule the commits armed (due in an hour) is wiped, as if Redis had lost it.
    """
    flow = await flow_ops.import_flow(runtime.services, WORKSPACE, FLOW)
    await flow_ops.publish_flow(runtime.services, WORKSPACE, flow["_id"])
    contacts = runtime.database.collection("contacts")
    due = datetime.now(UTC) + due_in
    documents = []
    for i in range(count):
        phone = f"+3461{i:07d}"
        await contact_ops.customer_says(runtime.services, WORKSPACE, phone, "hola", None)
        await contact_ops.start_flow(runtime.services, WORKSPACE, flow["_id"], phone, None)
        key = await key_of(runtime, WORKSPACE, phone)
        document = await contacts.find_one({"_id": key.doc_id})
        assert document is not None and len(document["timers"]) == 1
        await contacts.update_one({"_id": key.doc_id}, {"$set": {"timers.0.due_at": due}})
        documents.append(await contacts.find_one({"_id": key.doc_id}))
    assert runtime.timers is not None
    await runtime.redis.delete(
        runtime.timers.queue_name, *(job_key_prefix + arq_job_id(d["timers"][0]["id"]) for d in documents)
    )
    return documents


def worker_for(runtime: Runtime, actors: Any = None, **options: Any) -> TimerWorker:
    assert runtime.arq is not None and runtime.timers is not None
    return TimerWorker(runtime.arq, runtime.timers.queue_name, actors or runtime.actors, 0.05, **options)


@contextlib.asynccontextmanager
async def running(worker: TimerWorker | Worker) -> AsyncIterator[None]:
    task = asyncio.create_task(worker.main())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def run_of(runtime: Runtime, document: dict[str, Any]) -> dict[str, Any]:
    found = await runtime.contacts.load(ContactKey.of_contact(document))
    assert found is not None
    return found["runs"][-1]


def fired(run: dict[str, Any]) -> bool:
    return any(step["action"] == "no_reply" for step in run["steps"])


async def test_batched_rearm_enqueues_each_timer_once_and_the_worker_fires_them(quiet: Runtime) -> None:
    documents = await waiting_contacts(quiet, 5, due_in=timedelta(seconds=1))
    assert quiet.timers is not None and quiet.arq is not None
    queue = quiet.timers.queue_name
    assert await quiet.redis.zcard(queue) == 0

    assert quiet.actors is not None
    first = await recover(
        quiet.contacts, quiet.messages, quiet.timers, quiet.actors, quiet.clock, batch_size=2
    )
    assert (first.timers, first.timers_armed) == (5, 5)
    assert await quiet.redis.zcard(queue) == 5
    for document in documents:
        timer = document["timers"][0]
        record = await quiet.redis.get(job_key_prefix + arq_job_id(timer["id"]))
        function, args, kwargs, _, _ = deserialize_job_raw(record)
        assert (function, args, kwargs) == (
            FIRE_TIMER,
            (WORKSPACE, ContactKey.of_contact(document).local_id, timer["id"]),
            {},
        )
        score = await quiet.redis.zscore(queue, arq_job_id(timer["id"]))
        assert score == pytest.approx(timer["due_at"].timestamp() * 1000, abs=1)

    again = await recover(
        quiet.contacts, quiet.messages, quiet.timers, quiet.actors, quiet.clock, batch_size=2
    )
    assert (again.timers, again.timers_armed) == (5, 0)  # re-arming is idempotent
    assert await quiet.redis.zcard(queue) == 5

    worker = worker_for(quiet, batch_size=2, max_in_flight=3)
    async with running(worker):
        await eventually(lambda: quiet.redis.zcard(queue), lambda n: n == 0)
    for document in documents:
        run = await run_of(quiet, document)
        assert fired(run) and run["status"] != "waiting"
        timer_id = arq_job_id(document["timers"][0]["id"])
        assert not await quiet.redis.exists(job_key_prefix + timer_id, in_progress_key_prefix + timer_id)
    assert (worker.fired, worker.retried, worker.dropped) == (5, 0, 0)


async def test_arqs_own_worker_runs_a_timer_armed_in_a_batch(quiet: Runtime) -> None:
    (document,) = await waiting_contacts(quiet, 1, due_in=timedelta(seconds=0))
    assert quiet.timers is not None and quiet.arq is not None
    await quiet.recover_now()
    worker = Worker(
        functions=[func(fire_timer, name=FIRE_TIMER)],
        queue_name=quiet.timers.queue_name,
        redis_pool=quiet.arq,
        ctx={"actors": quiet.actors},
        handle_signals=False,
        poll_delay=0.05,
        keep_result=0,
        burst=True,
    )
    await asyncio.wait_for(worker.main(), timeout=10)
    assert worker.jobs_complete == 1 and worker.jobs_failed == 0
    assert fired(await run_of(quiet, document))


async def test_a_job_of_a_stale_timer_is_a_noop(quiet: Runtime) -> None:
    (document,) = await waiting_contacts(quiet, 1, due_in=timedelta(hours=1))
    key = ContactKey.of_contact(document)
    await contact_ops.customer_says(quiet, WORKSPACE, document["phone"], "ya estoy", None)
    before = await quiet.contacts.load(key)
    assert before is not None and before["timers"] == []  # the reply moved the run on
    assert quiet.timers is not None
    stale = {**document["timers"][0], "due_at": datetime.now(UTC)}
    assert await quiet.timers.schedule_many([(key, stale)]) == 1  # as a recovery pass racing the reply

    worker = worker_for(quiet)
    async with running(worker):
        await eventually(lambda: quiet.redis.zcard(quiet.timers.queue_name), lambda n: n == 0)
    after = await quiet.contacts.load(key)
    assert after is not None and after["version"] == before["version"]
    assert (worker.fired, worker.retried) == (1, 0)  # acked: nothing to do is done


class FlakyActors:
    """The real actor system, answering ``Unavailable`` to the first ``failures`` timer events."""

    def __init__(self, runtime: Runtime, failures: int) -> None:
        self._runtime = runtime
        self.failures = failures
        self.calls = 0

    def tell(self, key: ContactKey, event: TimerFired) -> Awaitable[TurnResult]:
        self.calls += 1
        if self.calls <= self.failures:
            failed: asyncio.Future[TurnResult] = asyncio.get_running_loop().create_future()
            failed.set_exception(Unavailable("shard moving; retry shortly"))
            return failed
        assert self._runtime.actors is not None
        return self._runtime.actors.tell(key, event)


async def test_unavailable_is_retried(quiet: Runtime) -> None:
    (document,) = await waiting_contacts(quiet, 1, due_in=timedelta(seconds=0))
    await quiet.recover_now()
    assert quiet.timers is not None
    actors = FlakyActors(quiet, failures=2)
    worker = worker_for(quiet, actors)
    async with running(worker):
        await eventually(lambda: run_of(quiet, document), fired, timeout=10)
        await eventually(lambda: quiet.redis.zcard(quiet.timers.queue_name), lambda n: n == 0)
    assert actors.calls == 3
    assert (worker.fired, worker.retried, worker.dropped) == (1, 2, 0)
    assert not await quiet.redis.exists(retry_key_prefix + document["timers"][0]["id"])


class HungActors:
    """A process that claimed timers and died before their turns committed."""

    def tell(self, key: ContactKey, event: TimerFired) -> Awaitable[TurnResult]:
        return asyncio.get_running_loop().create_future()  # never resolves


async def test_a_claimed_timer_whose_turn_never_committed_runs_again(quiet: Runtime) -> None:
    (document,) = await waiting_contacts(quiet, 1, due_in=timedelta(seconds=0))
    await quiet.recover_now()
    crashed = worker_for(quiet, HungActors(), claim_seconds=1.0)
    assert await crashed._claim_due(10) == 1  # claimed, then the process "dies": no ack, no release
    timing = VirtualTiming()
    survivor = worker_for(quiet, timing=timing)
    async with running(survivor):
        for _ in range(5):  # five polls (each ends asleep): the timer is still the dead worker's
            await asleep(timing)
            await timing.advance(0.05)
        await asleep(timing)
        assert survivor.fired == 0 and not fired(await run_of(quiet, document))
        # Its claim is a Redis key expiring in real time (1 s): polls go on until it is retaken.
        await advance_until(timing, lambda: run_of(quiet, document), fired, step=0.05, timeout=10)
    assert survivor.fired == 1


async def test_a_cancel_landing_as_the_worker_wakes_still_stops_it(quiet: Runtime) -> None:
    """The server's stop cancels the worker; a turn finishing at that moment must not eat the cancel."""
    timing = WatchedTiming()  # the real one: the cancel race is asyncio's
    worker = worker_for(quiet, timing=timing)
    task = asyncio.create_task(worker.main())
    await until(lambda: timing.waiting == 1, "the worker idle, waiting for a wake or the poll")
    worker._wake.set()  # a turn just finished ...
    task.cancel()  # ... as the server stops
    done, _ = await asyncio.wait({task}, timeout=5)
    assert done == {task} and task.cancelled()


async def test_timers_queued_under_the_untagged_layout_are_moved_and_fire(quiet: Runtime) -> None:
    """An upgrade from the layout without hash tags (queue ``konvo:<db>:timers``, job id = timer id):
    the next recovery pass moves each timer, due when it was, and the worker fires it."""
    (document,) = await waiting_contacts(quiet, 1, due_in=timedelta(seconds=0))
    assert quiet.timers is not None
    timer = document["timers"][0]
    legacy_queue = legacy_timer_queue(quiet.prefix)
    score = int(timer["due_at"].timestamp() * 1000)
    local_id = ContactKey.of_contact(document).local_id  # the older layout named the contact so too
    record = serialize_job(FIRE_TIMER, (WORKSPACE, local_id, timer["id"]), {}, None, score)
    await quiet.redis.zadd(legacy_queue, {timer["id"]: score})
    await quiet.redis.set(job_key_prefix + timer["id"], record)

    await quiet.recover_now(scan_contacts=False)  # no contact scan: only the move re-arms it
    assert not await quiet.redis.exists(legacy_queue, job_key_prefix + timer["id"])
    assert await quiet.redis.zscore(quiet.timers.queue_name, arq_job_id(timer["id"])) == score
    worker = worker_for(quiet)
    async with running(worker):
        await eventually(lambda: quiet.redis.zcard(quiet.timers.queue_name), lambda n: n == 0)
    assert fired(await run_of(quiet, document))
