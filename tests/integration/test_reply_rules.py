"""The reply rules through GraphQL on the real store, Redis and timer worker, on a clock tests move.

A message with buttons Sí/No and a one-minute no-reply path ("¿Sigues ahí?"), answered the ways
customers really answer: taps, typed titles in any case/accent/punctuation, numbers, other text
with and without ``on_reply``/``on_other``, photos, and replies that race the no-reply timer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from server.actors.events import TimerFired
from server.clock import SystemClock
from server.config import Settings
from server.ids import new_id
from server.operations.channel_inbound import accept_inbound, inbound_record
from server.runtime import Runtime
from tests.integration.conftest import WORKSPACE, publish
from tests.integration.test_nodes import outbox, run_of, start_with
from tests.integration.test_skeleton_flow import say
from tests.support.clock import ShiftedClock
from tests.support.contacts import key_of
from tests.support.graphql import GraphQLClient, eventually


@pytest.fixture
def clock() -> ShiftedClock:
    return ShiftedClock(SystemClock())


@pytest.fixture
async def runtime(fast_settings: Settings, clock: ShiftedClock) -> AsyncIterator[Runtime]:
    """The test runtime on a clock the test moves: the timer worker fires what falls due on it."""
    runtime = Runtime(fast_settings, clock=clock)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


def question(**extra: Any) -> dict[str, Any]:
    return {
        "id": "ask",
        "type": "message",
        "text": "¿Te ayudamos?",
        "buttons": [
            {"id": "yes", "title": "Sí", "next": "helped"},
            {"id": "no", "title": "No", "next": "bye"},
        ],
        "no_reply": {"after": "1m", "next": "nudge"},
    } | extra


def help_flow(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "start": "ask",
        "nodes": [
            question(**extra),
            {"id": "helped", "type": "tag", "add": ["wants-help"], "next": None},
            {"id": "bye", "type": "tag", "add": ["no-help"], "next": None},
            {"id": "replied", "type": "tag", "add": ["replied"], "next": None},
            {"id": "other", "type": "tag", "add": ["said-other"], "next": None},
            {"id": "nudge", "type": "message", "text": "¿Sigues ahí?", "next": None},
        ],
    }


async def tags(gql: GraphQLClient, phone: str) -> list[str]:
    return (await gql("query($p: String!) { contact(phone: $p) { tags } }", p=phone))["contact"]["tags"]


async def timers(runtime: Runtime, phone: str) -> list[dict[str, Any]]:
    document = await runtime.contacts.load(await key_of(runtime, WORKSPACE, phone))
    assert document is not None
    return document.get("timers", [])


async def started(gql: GraphQLClient, flow_id: str, phone: str) -> dict[str, Any]:
    await say(gql, phone, "hola")  # opens the 24-hour window (no keyword trigger here)
    run = await start_with(gql, flow_id, phone)
    assert run["status"] == "WAITING"
    return run


@pytest.mark.parametrize(
    ("said", "button", "tag", "matched_by"),
    [
        (None, "yes", "wants-help", "tap"),
        ("Sí", None, "wants-help", "title"),
        ("  SI!! ", None, "wants-help", "title"),
        ("👍 sí.", None, "wants-help", "title"),
        ("no", None, "no-help", "title"),
        ("1", None, "wants-help", "number"),
        ("2", None, "no-help", "number"),
    ],
)
async def test_taps_titles_and_numbers_follow_the_button(
    gql: GraphQLClient, runtime: Runtime, said: str | None, button: str | None, tag: str, matched_by: str
) -> None:
    flow_id = await publish(gql, help_flow("Help"))
    phone = "+34600200001"
    run = await started(gql, flow_id, phone)
    assert len(await timers(runtime, phone)) == 1
    await say(gql, phone, said, button)
    done = await run_of(gql, run["id"])
    assert done["status"] == "COMPLETED" and await tags(gql, phone) == [tag]
    assert next(s for s in done["steps"] if s["action"] == "button")["detail"]["matched_by"] == matched_by
    assert await timers(runtime, phone) == []  # the no-reply timer is gone with the answer


@pytest.mark.parametrize(
    ("edges", "tag"),
    [
        ({"on_reply": "replied"}, "replied"),
        ({"on_other": "other"}, "said-other"),
        ({"on_reply": "replied", "on_other": "other"}, "replied"),
    ],
)
async def test_other_text_follows_on_reply_else_on_other(
    gql: GraphQLClient, edges: dict[str, str], tag: str
) -> None:
    flow_id = await publish(gql, help_flow("Other", **edges))
    phone = "+34600200002"
    run = await started(gql, flow_id, phone)
    await say(gql, phone, "sí, quiero ayuda")
    done = await run_of(gql, run["id"])
    assert done["status"] == "COMPLETED" and await tags(gql, phone) == [tag]
    assert (await gql("query($id: ID!) { run(id: $id) { reply } }", id=run["id"]))["run"]["reply"] == (
        "sí, quiero ayuda"
    )


async def test_an_answer_matching_nothing_is_asked_again_once_and_silence_gets_the_nudge_later(
    gql: GraphQLClient, runtime: Runtime, clock: ShiftedClock
) -> None:
    """The issue's case: typing instead of tapping never brings "¿Sigues ahí?" 60 s later."""
    flow_id = await publish(gql, help_flow("Typed"))
    phone = "+34600200003"
    run = await started(gql, flow_id, phone)
    [first] = await timers(runtime, phone)

    await say(gql, phone, "sí, quiero ayuda")
    sent = await outbox(gql, phone)
    assert [m["text"] for m in sent] == ["¿Te ayudamos?", "¿Te ayudamos?"]
    assert [b["title"] for b in sent[1]["buttons"]] == ["Sí", "No"]  # asked again with its buttons
    waiting = await run_of(gql, run["id"])
    assert waiting["status"] == "WAITING" and waiting["waitingFor"]["reprompted"] is True
    assert [s["outcome"] for s in waiting["steps"] if s["action"] == "reply_not_understood"] == ["reprompted"]

    clock.advance(timedelta(seconds=50))
    await say(gql, phone, "¿hola?")  # not asked a third time; the no-reply time starts again
    assert len(await outbox(gql, phone)) == 2
    [fresh] = await timers(runtime, phone)
    assert fresh["id"] != first["id"]

    clock.advance(timedelta(seconds=20))  # the first timer's moment has passed: it finds nothing
    assert runtime.timers is not None
    queue = runtime.timers.queue_name
    await eventually(lambda: runtime.redis.zscore(queue, first["id"]), lambda score: score is None)
    still = await run_of(gql, run["id"])
    assert still["status"] == "WAITING" and not [s for s in still["steps"] if s["action"] == "no_reply"]
    assert [m["text"] for m in await outbox(gql, phone)] == ["¿Te ayudamos?", "¿Te ayudamos?"]

    clock.advance(timedelta(minutes=1))  # a minute of silence after the customer's last message
    done = await eventually(lambda: run_of(gql, run["id"]), lambda r: r["status"] == "COMPLETED")
    assert [s["action"] for s in done["steps"]][-3:] == ["no_reply", "message_sent", "ended"]
    assert [m["text"] for m in await outbox(gql, phone)][-1] == "¿Sigues ahí?"


async def test_a_reply_just_before_the_timer_wins_and_the_timer_finds_nothing(
    gql: GraphQLClient, runtime: Runtime, clock: ShiftedClock
) -> None:
    flow_id = await publish(gql, help_flow("Race"))
    phone = "+34600200004"
    run = await started(gql, flow_id, phone)
    [timer] = await timers(runtime, phone)
    clock.advance(timedelta(seconds=50))  # ten seconds before it falls due
    await say(gql, phone, "Sí")
    clock.advance(timedelta(seconds=15))  # now it is past due
    assert runtime.timers is not None and runtime.actors is not None
    await eventually(
        lambda: runtime.redis.zscore(runtime.timers.queue_name, timer["id"]), lambda score: score is None
    )
    # Delivered again (a retried job): still nothing.
    result = await runtime.actors.ask(await key_of(runtime, WORKSPACE, phone), TimerFired(timer["id"]))
    assert not result.changed
    done = await run_of(gql, run["id"])
    assert done["status"] == "COMPLETED" and await tags(gql, phone) == ["wants-help"]
    assert not [s for s in done["steps"] if s["action"] == "no_reply"]
    assert [m["text"] for m in await outbox(gql, phone)] == ["¿Te ayudamos?"]


async def test_the_timer_just_before_the_reply_takes_the_no_reply_path_once(
    gql: GraphQLClient, runtime: Runtime
) -> None:
    flow_id = await publish(gql, help_flow("Race back"))
    phone = "+34600200005"
    run = await started(gql, flow_id, phone)
    [timer] = await timers(runtime, phone)
    assert runtime.actors is not None
    await runtime.actors.ask(await key_of(runtime, WORKSPACE, phone), TimerFired(timer["id"]))  # due first
    await say(gql, phone, "Sí")  # arrives after: the run has left the question
    done = await run_of(gql, run["id"])
    assert done["status"] == "COMPLETED" and await tags(gql, phone) == []
    assert [s["action"] for s in done["steps"] if s["action"] in ("no_reply", "button")] == ["no_reply"]


async def test_a_photo_is_no_answer_but_the_customer_is_there(
    gql: GraphQLClient, runtime: Runtime, clock: ShiftedClock
) -> None:
    flow_id = await publish(gql, help_flow("Photo", on_reply="replied"))
    phone = "+34600200006"
    run = await started(gql, flow_id, phone)
    [first] = await timers(runtime, phone)
    clock.advance(timedelta(seconds=40))
    record = inbound_record(
        WORKSPACE,
        new_id("wamid"),
        phone=phone,
        channel="whatsapp",
        kind="image",
        media={"kind": "image", "id": "2754859441498128", "caption": None},
        at=runtime.clock.now(),
    )
    _, event = await accept_inbound(runtime.services, record)  # as the WhatsApp webhook stores it
    assert event is not None and runtime.actors is not None
    await runtime.actors.ask(await key_of(runtime, WORKSPACE, phone), event)
    waiting = await run_of(gql, run["id"])
    assert waiting["status"] == "WAITING" and waiting["node"] == "ask"
    assert waiting["steps"][-1]["action"] == "reply_not_understood"
    assert waiting["steps"][-1]["detail"]["kind"] == "image"
    [fresh] = await timers(runtime, phone)
    assert fresh["id"] != first["id"] and fresh["due_at"] > first["due_at"]
    assert len(await outbox(gql, phone)) == 1  # a photo is not answered with a repeat


async def test_template_quick_replies_are_matched_by_their_titles(gql: GraphQLClient) -> None:
    components = [
        {"type": "BODY", "text": "Tu carrito te espera"},
        {
            "type": "BUTTONS",
            "buttons": [
                {"type": "QUICK_REPLY", "text": "Comprar ahora"},
                {"type": "QUICK_REPLY", "text": "Más tarde"},
            ],
        },
    ]
    await gql(
        "mutation($i: TemplateInput!) { createTemplate(input: $i) { id } }",
        i={"name": "cart_titles", "language": "es", "category": "UTILITY", "components": components},
    )
    flow = {
        "name": "Cart titles",
        "start": "remind",
        "nodes": [
            {
                "id": "remind",
                "type": "template",
                "template": "cart_titles",
                "language": "es",
                "buttons": [{"id": "buy", "next": "helped"}, {"id": "later", "next": "bye"}],
            },
            {"id": "helped", "type": "tag", "add": ["wants-help"], "next": None},
            {"id": "bye", "type": "tag", "add": ["no-help"], "next": None},
        ],
    }
    flow_id = await publish(gql, flow)
    for phone, said, tag in (("+34600200007", "mas tarde!", "no-help"), ("+34600200008", "1", "wants-help")):
        run = await start_with(gql, flow_id, phone)
        await say(gql, phone, said)
        assert (await run_of(gql, run["id"]))["status"] == "COMPLETED"
        assert await tags(gql, phone) == [tag]
