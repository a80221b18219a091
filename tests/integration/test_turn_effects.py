"""What follows a commit (timers, sends, run projection, the inbound's applied mark) is never lost.

Issue 19's P1 found committed turns whose effects were cut: a shard retired on lease loss cancels
the turns still running, and recovery's redelivery of their inbound message then met "already
applied" and did nothing, leaving thousands of pending marks and unprojected runs. Effects now run
to their end even when the turn is cancelled, and a redelivered message redoes them.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from server.actors.effects import Effects
from server.actors.events import InboundMessage
from server.actors.system import ActorSystem
from server.documents import ContactDoc
from server.errors import Unavailable
from server.ids import new_id
from server.operations.channel_inbound import accept_inbound, inbound_record
from server.runtime import Runtime
from tests.integration.conftest import WORKSPACE
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


def system_with(runtime: Runtime, effects_class: type[Effects]) -> tuple[ActorSystem, Effects]:
    assert runtime.actors is not None
    deps = runtime.actors.deps
    effects = effects_class(**{f.name: getattr(deps.effects, f.name) for f in dataclasses.fields(Effects)})
    effects.settling = set()
    return ActorSystem(dataclasses.replace(deps, effects=effects, fence_of=None)), effects


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
    from tests.integration.conftest import publish

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
