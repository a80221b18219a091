"""The actor mailbox: a task per contact only while it has work (server/actors/contact_actor.py).

Tells racing the task's exit must all run, in the order told, one turn at a time; an idle actor
holds no task; a graceful stop runs what is queued and answers the rest.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from typing import Any

import pytest

from server.actors.events import InboundMessage, TurnResult
from server.actors.system import ActorSystem
from server.clock import SystemClock
from server.errors import Unavailable
from server.ids import ContactKey, new_id
from server.runtime import Runtime
from tests.integration.conftest import WORKSPACE, make_workspace
from tests.support.timing import until


class Watched:
    """An ActorSystem of its own on the runtime's deps, counting the turns of one workspace in flight.

    Every turn of an inbound message asks the workspace's timezone once (entering the turn) and
    calls ``after_turn`` once (after its commit): between the two, the turn is in flight. While
    ``held`` (``hold``/``release``), a turn entering waits there: a turn in flight for as long as
    a test needs, with no duration to guess.
    """

    def __init__(self, runtime: Runtime) -> None:
        assert runtime.actors is not None
        deps = runtime.actors.deps
        timezone_of, after_turn = deps.timezone_of, deps.after_turn
        self.in_flight = 0
        self.loads = 0
        contacts = deps.contacts
        watched = self

        class CountedLoads:
            def __getattr__(self, name: str) -> Any:
                return getattr(contacts, name)

            async def load(self, key: ContactKey) -> dict[str, Any] | None:
                watched.loads += 1
                return await contacts.load(key)

        self.most_in_flight = 0
        self.turns = 0
        self._open = asyncio.Event()
        self._open.set()

        async def watched_timezone(workspace_id: str) -> str:
            self.in_flight += 1
            self.turns += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            zone = await timezone_of(workspace_id)
            await watched._open.wait()  # held: the window another turn of the contact would slip into
            return zone

        async def watched_after_turn(before: dict[str, Any] | None, after: dict[str, Any]) -> None:
            if after_turn is not None:
                await after_turn(before, after)
            self.in_flight -= 1

        self.system = ActorSystem(
            dataclasses.replace(
                deps,
                contacts=CountedLoads(),
                fence_of=None,
                timezone_of=watched_timezone,
                after_turn=watched_after_turn,
            )
        )

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()


def inbound(text: str) -> InboundMessage:
    return InboundMessage(new_id("in"), SystemClock().now(), text=text)


def actor_task(system: ActorSystem, key: ContactKey) -> asyncio.Task[None] | None:
    return system._actors[key].task  # the point of these tests


async def test_tells_racing_the_task_exit_all_apply_in_order_one_at_a_time(runtime: Runtime) -> None:
    await make_workspace(runtime)
    watched = Watched(runtime)
    system = watched.system
    key = ContactKey(WORKSPACE, "+34600999001")
    rng = random.Random(8)
    told: list[str] = []
    futures: list[asyncio.Future[TurnResult]] = []
    tasks: set[asyncio.Task[None]] = set()  # every task that ran the contact's turns

    def tell(text: str) -> None:
        event = inbound(text)
        told.append(event.event_id)
        futures.append(system.tell(key, event))
        task = actor_task(system, key)
        assert task is not None
        tasks.add(task)

    def tell_when_done(future: asyncio.Future[TurnResult]) -> None:
        # Runs right after the turn's task resolved ``future`` and, its mailbox empty, exited.
        tell("from a done callback")

    for round_ in range(40):
        for _ in range(rng.randint(1, 4)):  # a burst the running task takes in turn
            tell(f"burst {round_}")
            for _ in range(rng.randint(0, 3)):
                await asyncio.sleep(0)
        if round_ % 3 == 0:
            futures[-1].add_done_callback(tell_when_done)
        if round_ % 2 == 0:
            await futures[-1]  # the task finishes its mailbox and exits ...
            await asyncio.sleep(0)  # ... so the next tell starts another one

    results: list[TurnResult] = []
    while len(results) < len(futures):  # done callbacks may still tell
        results = await asyncio.gather(*futures)
        await asyncio.sleep(0)
    assert actor_task(system, key) is None  # idle: no task left behind
    assert len(tasks) >= 10  # the task exited and restarted
    assert watched.turns == len(told) and watched.most_in_flight == 1
    assert [r.contact["applied_events"][-1] for r in results] == told  # each turn saw the ones before
    stored = await runtime.contacts.load(key)
    assert stored is not None and stored["applied_events"][-len(told) :] == told
    assert stored["version"] == len(told)
    await system.stop()


async def test_an_idle_actor_holds_no_task_and_passivation_only_drops_idle_ones(runtime: Runtime) -> None:
    await make_workspace(runtime)
    watched = Watched(runtime)
    system = watched.system
    idle, busy = ContactKey(WORKSPACE, "+34600999002"), ContactKey(WORKSPACE, "+34600999003")
    await system.ask(idle, inbound("hola"))
    assert actor_task(system, idle) is None
    actor = system._actors[idle]
    assert actor.document is None and actor._packed  # idle: the document kept packed
    assert (await system.ask(idle, inbound("sigo"))).contact["version"] == 2
    assert watched.loads == 1  # the second turn read the packed copy, not the store
    watched.hold()
    pending = system.tell(busy, inbound("hola"))
    await until(lambda: watched.in_flight == 1, "the busy contact's turn running")
    assert system.passivate_idle(0) == 1  # the busy one stays
    assert system.active_count == 1 and actor_task(system, busy) is not None
    watched.release()
    result = await pending
    assert result.contact["version"] == 1
    loads = watched.loads
    second = await system.ask(idle, inbound("otra vez"))  # reactivated from the store
    assert second.contact["version"] == 3 and watched.loads == loads + 1
    await system.stop()


async def test_a_failed_turn_reaches_its_caller_and_the_next_reloads(runtime: Runtime) -> None:
    await make_workspace(runtime)
    system = Watched(runtime).system
    key = ContactKey(WORKSPACE, "+34600999004")
    await system.ask(key, inbound("hola"))
    system._actors[key].document = {"broken": True}  # a cache gone bad
    with pytest.raises(KeyError):
        await system.ask(key, inbound("falla"))
    assert system._actors[key].document is None
    again = await system.ask(key, inbound("de nuevo"))
    assert again.contact["version"] == 2
    await system.stop()


async def test_stop_runs_the_queued_turns_and_answers_the_rest(runtime: Runtime) -> None:
    await make_workspace(runtime)
    watched = Watched(runtime)
    system = watched.system
    key = ContactKey(WORKSPACE, "+34600999005")
    watched.hold()
    queued = [system.tell(key, inbound(f"m{i}")) for i in range(3)]
    await until(lambda: watched.in_flight == 1, "the first turn running")
    stopping = asyncio.create_task(system.stop(grace_seconds=5))
    await until(lambda: system._stopping, "the stop begun")  # while a turn is in flight
    watched.release()
    await stopping
    assert [(await f).contact["version"] for f in queued] == [1, 2, 3]
    with pytest.raises(Unavailable):
        system.tell(key, inbound("tarde"))

    stuck = Watched(runtime)
    stuck.hold()  # never released: the first turn outlives the grace
    other = ContactKey(WORKSPACE, "+34600999006")
    cut = [stuck.system.tell(other, inbound(f"m{i}")) for i in range(3)]
    await until(lambda: stuck.in_flight == 1, "the first turn running")
    await stuck.system.stop(grace_seconds=0.1)  # the first turn is cancelled, the others never run
    for future in cut:
        with pytest.raises(Unavailable):
            await future


async def test_an_older_event_told_again_is_a_duplicate_not_only_the_latest(runtime: Runtime) -> None:
    """Dedupe checks every applied event kept, not just the most recent one (a provider may redeliver
    a message long after others were applied)."""
    await make_workspace(runtime)
    system = Watched(runtime).system
    key = ContactKey(WORKSPACE, "+34600999007")
    first, second, third = inbound("uno"), inbound("dos"), inbound("tres")
    for event in (first, second, third):
        assert not (await system.ask(key, event)).duplicate
    for event in (first, second):
        again = await system.ask(key, event)
        assert again.duplicate and not again.changed
    system._actors[key].document = None  # and from the stored document, not only the cached one
    assert (await system.ask(key, first)).duplicate
    stored = await runtime.contacts.load(key)
    assert stored is not None and stored["version"] == 3
    assert stored["applied_events"][-3:] == [first.event_id, second.event_id, third.event_id]
    await system.stop()


async def test_a_turn_on_a_document_another_writer_moved_on_reloads_and_redoes_it(runtime: Runtime) -> None:
    """Two actor systems on one store (a stale owner and the new one): the first's cached document
    is behind, its compare-and-set loses, and the turn is redone on the stored document: nothing
    the other wrote is lost, and nothing is refused."""
    await make_workspace(runtime)
    stale, current = Watched(runtime), Watched(runtime)
    key = ContactKey(WORKSPACE, "+34600999008")
    first, second, third = inbound("uno"), inbound("dos"), inbound("tres")
    await stale.system.ask(key, first)  # cached at version 1
    await current.system.ask(key, second)  # version 2 in the store
    loads = stale.loads
    result = await stale.system.ask(key, third)
    assert result.changed and not result.duplicate
    assert stale.loads == loads + 1  # the lost race reloaded once, then won
    stored = await runtime.contacts.load(key)
    assert stored is not None and stored["version"] == 3
    assert stored["applied_events"][-3:] == [first.event_id, second.event_id, third.event_id]
    assert result.contact["version"] == 3
    await stale.system.stop()
    await current.system.stop()
