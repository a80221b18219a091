"""Quiet hours through GraphQL on the real store and Redis, in virtual time (ShiftedClock).

A delay's message due at night waits until the window ends (durably: after a restart that lost
Redis's schedule too), a transactional flow and an agent are never held, and a customer who
writes at night gets what was waiting for them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from arq.constants import job_key_prefix

from server.actors.events import TimerFired
from server.clock import SystemClock
from server.config import Settings
from server.redis_keys import arq_job_id
from server.runtime import Runtime
from server.sending.holds import WAKE
from tests.integration.conftest import WORKSPACE, client_for, publish
from tests.integration.test_nodes import RUN, start_with
from tests.integration.test_skeleton_flow import OUTBOX, say
from tests.support.clock import ShiftedClock
from tests.support.contacts import key_of
from tests.support.graphql import GraphQLClient, eventually

MADRID = ZoneInfo("Europe/Madrid")  # the test workspace's zone (conftest.make_workspace)
DAY = date.today() + timedelta(days=2)
EVERY_DAY = ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"]
SETTINGS = """mutation($q: [QuietHoursWindowInput!], $t: Boolean) {
  updateSendingSettings(quietHours: $q, typingIndicator: $t) {
    quietHours { days start end } typingIndicator timezone } }"""


@pytest.fixture
def clock() -> ShiftedClock:
    return ShiftedClock(SystemClock())


@pytest.fixture
async def runtime(fast_settings: Settings, clock: ShiftedClock) -> AsyncIterator[Runtime]:
    runtime = Runtime(fast_settings, clock=clock)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


def at(clock: ShiftedClock, day: date, hour: int, minute: int = 0) -> datetime:
    """Move the clock to ``day`` at ``hour:minute`` Madrid time; returns that moment."""
    target = datetime.combine(day, time(hour, minute), tzinfo=MADRID)
    clock.advance(target - clock.now())
    return target


async def nights_are_quiet(gql: GraphQLClient) -> None:
    found = await gql(SETTINGS, q=[{"days": EVERY_DAY, "start": "21:00", "end": "09:00"}])
    assert found["updateSendingSettings"] == {
        "quietHours": [{"days": EVERY_DAY, "start": "21:00", "end": "09:00"}],
        "typingIndicator": True,
        "timezone": "Europe/Madrid",
    }


async def texts(gql: GraphQLClient, phone: str) -> list[str]:
    return [m["text"] for m in (await gql(OUTBOX, p=phone))["sandboxOutbox"]]


async def run_of(gql: GraphQLClient, run_id: str) -> dict[str, Any]:
    return (await gql(RUN, id=run_id))["run"]


def held_steps(run: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in run["steps"] if s["action"] == "message_held"]


def one_message(name: str, text: str, **settings: Any) -> dict[str, Any]:
    return {
        "name": name,
        "start": "say",
        "settings": settings,
        "nodes": [{"id": "say", "type": "message", "text": text, "next": None}],
    }


async def test_a_delays_message_due_at_night_waits_for_the_morning_even_across_a_restart(
    runtime: Runtime, gql: GraphQLClient, clock: ShiftedClock, api_key: str
) -> None:
    await nights_are_quiet(gql)
    flow_id = await publish(
        gql,
        {
            "name": "Reminder",
            "start": "hi",
            "nodes": [
                {"id": "hi", "type": "message", "text": "Hola", "next": "wait"},
                {"id": "wait", "type": "delay", "for": "2h", "next": "nudge"},
                {"id": "nudge", "type": "message", "text": "¿Sigues ahí?", "next": None},
            ],
        },
    )
    phone = "+34600810001"
    at(clock, DAY, 20)
    await say(gql, phone, "hola")  # the window is open for 24 h
    run = await start_with(gql, flow_id, phone)
    assert await texts(gql, phone) == ["Hola"]  # 20:00 is not quiet

    clock.advance(timedelta(hours=2))  # 22:00: the delay ends inside quiet hours
    waiting = await eventually(lambda: run_of(gql, run["id"]), lambda r: bool(held_steps(r)))
    [step] = held_steps(waiting)
    morning = datetime.combine(DAY + timedelta(days=1), time(9), tzinfo=MADRID)
    assert step["node"] == "nudge" and step["outcome"] == "QUIET_HOURS"
    assert datetime.fromisoformat(step["detail"]["until"]) == morning
    assert step["detail"]["timezone"] == "Europe/Madrid" and step["detail"]["timezone_from"] == "workspace"
    assert await texts(gql, phone) == ["Hola"]

    # A restart that also lost Redis's schedule: the hold lives in the contact document.
    key = await key_of(runtime, WORKSPACE, phone)
    [wake] = [t for t in (await runtime.contacts.load(key) or {})["timers"] if t["kind"] == WAKE]
    assert runtime.timers is not None
    await runtime.redis.delete(runtime.timers.queue_name, job_key_prefix + arq_job_id(wake["id"]))
    await runtime.stop()
    again = Runtime(runtime.settings, clock=clock)
    await again.start()
    fresh_gql = client_for(again, api_key)
    try:
        at(clock, DAY + timedelta(days=1), 8, 59)
        assert again.actors is not None  # a wake that came early sends nothing
        await again.actors.ask(key, TimerFired(wake["id"]))
        assert await texts(fresh_gql, phone) == ["Hola"]

        at(clock, DAY + timedelta(days=1), 9)
        await eventually(lambda: texts(fresh_gql, phone), lambda found: found == ["Hola", "¿Sigues ahí?"])
        done = await eventually(lambda: run_of(fresh_gql, run["id"]), lambda r: r["status"] == "COMPLETED")
        assert [s["action"] for s in done["steps"]].count("message_sent") == 2
    finally:
        await fresh_gql.http.aclose()
        await again.stop()


async def test_a_transactional_flow_is_not_held_where_another_is(
    gql: GraphQLClient, clock: ShiftedClock
) -> None:
    await nights_are_quiet(gql)
    confirm = await publish(gql, one_message("Order confirmation", "Pedido confirmado", transactional=True))
    promo = await publish(gql, one_message("Promo", "¡Ofertas!"))
    phone = "+34600810002"
    at(clock, DAY, 22, 30)
    await say(gql, phone, "hola")
    at(clock, DAY, 23)
    await start_with(gql, confirm, phone)  # an API start: automated, but transactional
    promo_run = await start_with(gql, promo, phone)
    assert await texts(gql, phone) == ["Pedido confirmado"]
    [step] = held_steps(await run_of(gql, promo_run["id"]))
    assert step["outcome"] == "QUIET_HOURS"


async def test_an_agent_is_never_held_and_a_customer_who_writes_gets_what_waited(
    gql: GraphQLClient, clock: ShiftedClock
) -> None:
    await nights_are_quiet(gql)
    promo = await publish(gql, one_message("Night promo", "¡Ofertas!"))
    phone = "+34600810003"
    at(clock, DAY, 22, 30)
    await say(gql, phone, "hola")
    at(clock, DAY, 23, 30)
    run = await start_with(gql, promo, phone)
    assert held_steps(await run_of(gql, run["id"]))  # the flow's message waits for the morning
    sent = await gql(
        "mutation($p: String!, $t: String!) { sendAgentMessage(phone: $p, text: $t) { status text } }",
        p=phone,
        t="Te escribo yo",
    )
    assert sent["sendAgentMessage"]["text"] == "Te escribo yo"
    assert await texts(gql, phone) == ["Te escribo yo"]  # the agent went at once, the promo did not

    await say(gql, phone, "¿sigue la oferta?")  # awake and writing: nothing waits for them
    await eventually(lambda: texts(gql, phone), lambda found: found == ["Te escribo yo", "¡Ofertas!"])


async def test_settings_are_checked_and_kept(gql: GraphQLClient) -> None:
    from tests.support.graphql import GraphQLErrors

    with pytest.raises(GraphQLErrors) as refused:
        await gql(SETTINGS, q=[{"days": ["MON"], "start": "25:00", "end": "09:00"}])
    assert refused.value.codes == ["INVALID_INPUT"] and "quietHours[0].start" in str(refused.value)
    await gql(SETTINGS, q=[{"days": ["SAT", "SUN"], "start": "00:00", "end": "24:00"}])
    kept = await gql(SETTINGS, t=False)  # quiet hours not given: kept
    assert kept["updateSendingSettings"]["quietHours"] == [
        {"days": ["SAT", "SUN"], "start": "00:00", "end": "24:00"}
    ]
    read = await gql("{ sendingSettings { typingIndicator quietHours { days } } }")
    assert read["sendingSettings"] == {"typingIndicator": False, "quietHours": [{"days": ["SAT", "SUN"]}]}
