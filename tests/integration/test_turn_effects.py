"""What follows a commit (timers, sends, run projection, the inbound's applied mark) is never lost.

Issue 19's P1 found committed turns whose effects were cut: a shard retired on lease loss cancels
the turns still running, and recovery's redelivery of their inbound message then met "already
applied" and did nothing, leaving thousands of pending marks and unprojected runs. Effects now run
to their end even when the turn is cancelled, and a redelivered message redoes them.

What follows a commit is also exactly what the turn changed, measured against the document before
it: a timer or a run already there is not armed or inserted again, a message waiting in the outbox
does not move the conversation up again, and recovery's redelivery leaves no sent message stored.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from server.actors.effects import Effects, TimerScheduler
from server.actors.events import AgentMessage, InboundMessage, Redeliver, TagContact
from server.actors.system import ActorSystem
from server.documents import ContactDoc, TimerDoc
from server.errors import Unavailable
from server.ids import ContactKey, new_id
from server.operations.channel_inbound import accept_inbound, inbound_record
from server.runtime import Runtime
from server.store.database import Database
from server.store.runs import RunRepository
from tests.integration.conftest import WORKSPACE, publish, statements
from tests.integration.test_quiet_hours import DAY, at, nights_are_quiet, one_message, texts
from tests.integration.test_skeleton_flow import say
from tests.support.clock import ShiftedClock
from tests.support.contacts import key_of
from tests.support.flows import skeleton_flow
from tests.support.graphql import GraphQLClient

PHONE = "+34600777001"


class CutEffects(Effects):
    """The runtime's own effects, cut right after the commit, as a crash or a cancel left them."""

    async def after_commit(self, *args: Any, **kwargs: Any) -> None:
        raise asyncio.CancelledError


class HeldEffects(Effects):
    """The runtime's own effects, held at their start until the test lets them go."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.entered = asyncio.Event()
        self.go = asyncio.Event()

    async def after_commit(self, *args: Any, **kwargs: Any) -> None:
        self.entered.set()
        await self.go.wait()
        await super().after_commit(*args, **kwargs)


class CountedTimers:
    """The runtime's timer scheduler, counting the timers it is asked to arm."""

    def __init__(self, timers: TimerScheduler) -> None:
        self._timers = timers
        self.armed = 0

    async def schedule(self, key: ContactKey, timer: TimerDoc) -> None:
        self.armed += 1
        await self._timers.schedule(key, timer)


def system_with(runtime: Runtime, effects_class: type[Effects]) -> tuple[ActorSystem, Effects]:
    assert runtime.actors is not None
    deps = runtime.actors.deps
    effects = effects_class(**{f.name: getattr(deps.effects, f.name) for f in dataclasses.fields(Effects)})
    effects.settling = set()
    return ActorSystem(dataclasses.replace(deps, effects=effects, fence_of=None)), effects


def counting_system(runtime: Runtime, counted: Database) -> tuple[ActorSystem, CountedTimers]:
    """An actor system of its own (nothing cached: its first turn loads the stored contact) whose
    effects project runs through ``counted`` and count the timers they arm."""
    system, effects = system_with(runtime, Effects)
    timers = CountedTimers(effects.timers)
    effects.timers = timers
    effects.runs = RunRepository(counted)
    return system, timers


async def commit_losing_effects(runtime: Runtime, event: InboundMessage) -> ContactDoc:
    """Apply ``event`` on an actor whose effects fail after the commit (a crash in between): its
    caller is told to retry; returns the stored contact, which holds the event as applied."""
    cut, _ = system_with(runtime, CutEffects)
    key = await key_of(runtime, WORKSPACE, PHONE)
    with pytest.raises(Unavailable):
        await cut.ask(key, event)
    await cut.stop()
    stored = await runtime.contacts.load(key)
    assert stored is not None and event.event_id in stored["applied_events"]  # committed
    return stored


async def start_waiting_run(runtime: Runtime, gql: GraphQLClient) -> str:
    flow_id = await publish(gql, skeleton_flow("Effects", no_reply_after="PT1H"))
    await gql('mutation($p: String!) { sandboxInbound(phone: $p, text: "hola") }', p=PHONE)  # window open
    started = await gql(
        "mutation($f: ID!, $p: String!) { startFlow(flowId: $f, phone: $p) { id } }", f=flow_id, p=PHONE
    )
    return started["startFlow"]["id"]


async def customer_answers(runtime: Runtime, text: str) -> tuple[dict[str, Any], InboundMessage]:
    """The customer's answer, stored as the webhook stores it: the record and the event to apply."""
    record = inbound_record(
        WORKSPACE,
        new_id("wamid"),
        phone=PHONE,
        contact_id=(await key_of(runtime, WORKSPACE, PHONE)).doc_id,
        channel="whatsapp",
        text=text,
        at=runtime.clock.now(),
    )
    _, event = await accept_inbound(runtime.services, record)
    assert event is not None
    return record, event


async def test_a_redelivered_message_redoes_the_effects_its_turn_lost(
    runtime: Runtime, gql: GraphQLClient
) -> None:
    run_id = await start_waiting_run(runtime, gql)
    record, event = await customer_answers(runtime, "Sí, por favor")
    await commit_losing_effects(runtime, event)  # committed ...
    key = await key_of(runtime, WORKSPACE, PHONE)
    assert not await runtime.messages.applied(record["_id"])  # ... but its effects were lost
    projected = await runtime.runs.get(WORKSPACE, run_id)
    assert projected is not None and projected["status"] == "waiting"  # the projection is behind

    assert runtime.actors is not None
    again = await runtime.actors.ask(key, event)  # what recovery does with a pending mark
    assert again.duplicate
    assert await runtime.messages.applied(record["_id"])
    projected = await runtime.runs.get(WORKSPACE, run_id)
    assert projected is not None and projected["status"] == "completed"


async def test_a_turn_cancelled_after_its_commit_still_finishes_its_effects(
    runtime: Runtime, gql: GraphQLClient
) -> None:
    run_id = await start_waiting_run(runtime, gql)
    record, event = await customer_answers(runtime, "No, gracias")
    held, effects = system_with(runtime, HeldEffects)
    assert isinstance(effects, HeldEffects)
    key = await key_of(runtime, WORKSPACE, PHONE)
    turn = held.tell(key, event)
    await asyncio.wait_for(effects.entered.wait(), 30)
    await held.stop(grace_seconds=0.01)  # the shard is retired: its running turn is cancelled
    assert turn.done() and isinstance(turn.exception(), Unavailable)  # the caller is told to retry
    effects.go.set()
    await effects.wait_settled(30)
    assert await runtime.messages.applied(record["_id"])
    projected = await runtime.runs.get(WORKSPACE, run_id)
    assert projected is not None and projected["status"] == "completed"


async def test_a_redelivery_sends_what_a_cut_turn_left_once_and_empties_the_stored_outbox(
    runtime: Runtime, gql: GraphQLClient
) -> None:
    """Recovery's ``Redeliver`` to a contact no actor holds (a restart, another replica): the
    stored outbox is delivered, and what went leaves the store at once; no commit follows a
    redelivery to drop it later, so a stale outbox would be read by every recovery pass."""
    await say(gql, PHONE, "hola")  # the window is open
    key = await key_of(runtime, WORKSPACE, PHONE)
    cut, _ = system_with(runtime, CutEffects)
    with pytest.raises(Unavailable):
        await cut.ask(key, AgentMessage(new_id("agent"), "Te escribo yo"))  # committed, not sent
    await cut.stop()
    stored = await runtime.contacts.load(key)
    assert stored is not None and [m["text"] for m in stored["outbox"]] == ["Te escribo yo"]
    assert await texts(gql, PHONE) == []

    recovering, _ = system_with(runtime, Effects)
    assert not (await recovering.ask(key, Redeliver(new_id("redeliver")))).changed
    await recovering.stop()
    assert await texts(gql, PHONE) == ["Te escribo yo"]
    stored = await runtime.contacts.load(key)
    assert stored is not None and stored["outbox"] == []  # it went: the store lists it no more


async def test_a_turn_arms_projects_and_sends_only_what_it_changed(
    runtime: Runtime, gql: GraphQLClient, counted: Database
) -> None:
    """What follows a commit compares the turn's document with the one before it: a timer or a
    run already there is not armed or inserted again, a message already sent is not sent again."""
    run_id = await start_waiting_run(runtime, gql)  # "ask" sent, its no-reply timer armed
    key = await key_of(runtime, WORKSPACE, PHONE)
    system, timers = counting_system(runtime, counted)
    tagged = await system.ask(key, TagContact(new_id("tag"), add=("vip",)))
    assert tagged.changed
    assert timers.armed == 0  # the no-reply timer was armed by the turn that set it
    assert statements(counted, "runs") == {}  # no run changed

    _, event = await customer_answers(runtime, "Sí, por favor")
    await system.ask(key, event)
    assert statements(counted, "runs") == {"update": 1}  # the run was there: replaced, not inserted
    assert timers.armed == 0
    await system.stop()
    projected = await runtime.runs.get(WORKSPACE, run_id)
    assert projected is not None and projected["status"] == "completed"
    assert len(await texts(gql, PHONE)) == 1  # the question, once


async def test_a_turn_that_queues_nothing_leaves_a_held_message_as_it_was(
    runtime: Runtime, gql: GraphQLClient, clock: ShiftedClock, counted: Database
) -> None:
    """A message held for the morning stays in the outbox across other turns: they neither move
    the conversation up in the inbox (it was not queued by them) nor arm its wake timer again."""
    await nights_are_quiet(gql)
    promo = await publish(gql, one_message("Night promo", "¡Ofertas!"))
    at(clock, DAY, 22, 30)
    await say(gql, PHONE, "hola")
    at(clock, DAY, 23, 30)
    await gql("mutation($f: ID!, $p: String!) { startFlow(flowId: $f, phone: $p) { id } }", f=promo, p=PHONE)
    key = await key_of(runtime, WORKSPACE, PHONE)
    held = await runtime.contacts.load(key)
    assert held is not None
    [waiting] = held["outbox"]
    assert waiting.get("hold") and held["timers"]  # until the morning, with its wake timer
    moved_up_at = held["last_message_at"]

    at(clock, DAY, 23, 45)
    assert runtime.actors is not None  # the actor that held it, with its copy cached
    assert (await runtime.actors.ask(key, TagContact(new_id("tag"), add=("vip",)))).changed
    system, timers = counting_system(runtime, counted)  # one that loads the stored copy
    assert (await system.ask(key, TagContact(new_id("tag"), add=("night",)))).changed
    await system.stop()
    assert timers.armed == 0  # the wake timer was armed with the hold
    stored = await runtime.contacts.load(key)
    assert stored is not None
    assert stored["last_message_at"] == moved_up_at  # the inbox order is the message's, not the tag's
    assert [m["id"] for m in stored["outbox"]] == [waiting["id"]]
    assert await texts(gql, PHONE) == []
