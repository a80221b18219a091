"""``simulateFlow`` through GraphQL: the same steps and end as a real run on the real runtime.

Each example flow of ``examples/flows`` is played twice with one script: simulated (virtual
time, nothing sent or stored) and for real (startFlow, sandboxInbound, the clock moved and each
timer fired when it falls due, as its arq job would). The runs, their steps and ends, the
contact's tags and variables, and what the customer was shown must be the same.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from server.actors.events import TimerFired
from server.clock import SystemClock, as_utc
from server.config import Settings
from server.durations import parse_duration
from server.runtime import Runtime
from tests.integration.conftest import WORKSPACE
from tests.integration.test_example_flows import examples  # noqa: F401 - fixture
from tests.integration.test_nodes import start_with
from tests.integration.test_skeleton_flow import say
from tests.support.clock import ShiftedClock
from tests.support.contacts import key_of
from tests.support.graphql import GraphQLClient, GraphQLErrors
from tests.support.network import HostsResolver

SIMULATE = """
query($d: JSON!, $c: JSON, $s: [SimulationInput!]!, $t: JSON, $at: DateTime) {
  simulateFlow(definition: $d, contact: $c, script: $s, trigger: $t, startAt: $at) {
    startedAt endedAt turns stopped contact
    runs { id flowName status node endReason }
    steps { runId node action outcome at tags variables optedIn windowOpen detail }
    transcript { direction at text node buttonId rendered { body buttons { id title } } }
    end { flowName status node reason why at }
    issues { code severity nodeId }
  }
}
"""
REAL = """
query($p: String!) {
  contact(phone: $p) {
    tags variables optedIn
    runs { flowName status node endReason steps { node action outcome } }
  }
  sandboxOutbox(phone: $p) { rendered { text } }
}
"""


@pytest.fixture
def clock() -> ShiftedClock:
    return ShiftedClock(SystemClock())


@pytest.fixture
async def runtime(fast_settings: Settings, clock: ShiftedClock) -> AsyncIterator[Runtime]:
    """The runtime on a clock the test moves (its timer worker fires what falls due on it)."""
    runtime = Runtime(fast_settings, clock=clock, resolver=HostsResolver())
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


@dataclass
class Scenario:
    flow: str
    phone: str
    script: list[dict[str, Any]] = field(default_factory=list)
    contact: dict[str, Any] = field(default_factory=dict)
    trigger: dict[str, Any] | None = None


CART = {"cart_url": "https://shop.example/c/9"}
ORDER = {"order_id": "A-100", "tracking_url": "https://track.example/A-100"}
SCENARIOS = [
    Scenario(
        "Abandoned cart",
        "+34600710001",
        [{"after": "1h", "button": "later"}, {"after": "25h", "button": "buy"}],
        {"optedIn": True},
        CART,
    ),
    Scenario("Abandoned cart", "+34600710002", [], {"optedIn": True}, CART),  # silent: cold after 2 h
    Scenario("Abandoned cart", "+34600710003", [{"after": "1h", "button": "buy"}], {}, CART),  # no opt-in
    Scenario(
        "Order update with feedback",
        "+34600710004",
        [{"after": "73h", "button": "bad"}, {"after": "30m", "text": "Llegó tarde"}],
        {},
        ORDER,
    ),
    Scenario("Order update with feedback", "+34600710005", [{"after": "80h", "button": "good"}], {}, ORDER),
    Scenario("VIP routing", "+34600710006", [], {"windowOpen": True, "tags": ["vip"]}),
    Scenario("VIP routing", "+34600710007", [], {"windowOpen": True}),
    Scenario("Opt-in collection", "+34600710008", [{"after": "2h", "text": "1"}], {"windowOpen": True}),
    Scenario("Opt-in collection", "+34600710009", [{"after": "10m", "button": "no"}], {"windowOpen": True}),
    Scenario("Opt-in collection", "+34600710010", [], {}),  # window closed: not sent
    Scenario(
        "Welcome",
        "+34600710011",
        [
            {"after": "5m", "button": "order"},
            {"after": "2m", "text": "A-123"},
            {"after": "1m", "text": "24/12/2026"},
            {"after": "1m", "text": "Ana"},
        ],
        {"windowOpen": True},
    ),
    Scenario(
        "Welcome",
        "+34600710012",
        [{"after": "3m", "button": "offers"}, {"after": "30m", "button": "yes"}],
        {"windowOpen": True},
    ),
    Scenario(
        "Welcome",
        "+34600710013",
        [{"after": "20m", "text": "¿hola?"}, {"after": "5m", "image": True}],
        {"windowOpen": True},
    ),
]


def _input(item: dict[str, Any]) -> dict[str, Any]:
    """A script item as ``SimulationInput`` (``image: True`` stands for a photo)."""
    if item.get("image"):
        return {"after": item["after"], "kind": "image"}
    return item


async def simulated(gql: GraphQLClient, definition: dict[str, Any], scenario: Scenario) -> dict[str, Any]:
    contact = {"phone": scenario.phone, **scenario.contact}
    script = [_input(i) for i in scenario.script]
    return (await gql(SIMULATE, d=definition, c=contact, s=script, t=scenario.trigger))["simulateFlow"]


async def _timers(runtime: Runtime, phone: str) -> list[dict[str, Any]]:
    document = await runtime.contacts.load(await key_of(runtime, WORKSPACE, phone))
    return list((document or {}).get("timers", []))


async def fire_due(runtime: Runtime, clock: ShiftedClock, phone: str, until: datetime | None) -> None:
    """Fire the contact's timers that fall due by ``until`` (None: all), in order, each at its time."""
    assert runtime.actors is not None
    while timers := await _timers(runtime, phone):
        timer = min(timers, key=lambda t: as_utc(t["due_at"]))
        due = as_utc(timer["due_at"])
        if until is not None and due > until:
            return
        if due > clock.now():
            clock.advance(due - clock.now())
        await runtime.actors.ask((await key_of(runtime, WORKSPACE, phone)), TimerFired(timer["id"]))


async def real(
    gql: GraphQLClient, runtime: Runtime, clock: ShiftedClock, flow_id: str, scenario: Scenario
) -> dict[str, Any]:
    phone = scenario.phone
    if scenario.contact.get("windowOpen"):
        await say(gql, phone, "hola")  # no trigger listens: only opens the window
    if scenario.contact.get("optedIn"):
        await gql("mutation($p: String!) { setOptIn(phone: $p, optedIn: true) { optedIn } }", p=phone)
    for tag in scenario.contact.get("tags", []):
        await gql(
            "mutation($p: String!, $t: String!) { tagContact(phone: $p, tag: $t) { tags } }", p=phone, t=tag
        )
    await start_with(gql, flow_id, phone, scenario.trigger)
    now = clock.now()
    for item in scenario.script:
        now = now + parse_duration(item["after"])
        await fire_due(runtime, clock, phone, now)
        if now > clock.now():
            clock.advance(now - clock.now())
        if item.get("image"):
            await runtime_media(runtime, phone)
        else:
            await say(gql, phone, item.get("text"), item.get("button"))
    await fire_due(runtime, clock, phone, None)
    return await gql(REAL, p=phone)


async def runtime_media(runtime: Runtime, phone: str) -> None:
    """A photo from the customer, recorded and applied as a webhook's would be."""
    from server.operations.channel_inbound import accept_inbound, inbound_record

    record = inbound_record(
        WORKSPACE, f"in-photo-{phone}", phone=phone, channel="sandbox", kind="image", at=runtime.clock.now()
    )
    _, event = await accept_inbound(runtime.services, record)
    assert event is not None and runtime.actors is not None
    await runtime.actors.ask((await key_of(runtime, WORKSPACE, phone)), event)


def shape_real(found: dict[str, Any]) -> dict[str, Any]:
    contact = found["contact"]
    return {
        "runs": [
            (
                r["flowName"],
                r["status"],
                r["node"],
                r["endReason"],
                [(s["node"], s["action"], s["outcome"]) for s in r["steps"]],
            )
            for r in contact["runs"]
        ],
        "tags": contact["tags"],
        "variables": contact["variables"],
        "optedIn": contact["optedIn"],
        "shown": [m["rendered"]["text"] for m in found["sandboxOutbox"]],
    }


def shape_simulated(found: dict[str, Any]) -> dict[str, Any]:
    steps: dict[str, list[tuple[str | None, str, str]]] = {}
    for step in found["steps"]:
        steps.setdefault(step["runId"], []).append((step["node"], step["action"], step["outcome"]))
    return {
        "runs": [
            (r["flowName"], r["status"], r["node"], r["endReason"], steps.get(r["id"], []))
            for r in found["runs"]
        ],
        "tags": found["contact"]["tags"],
        "variables": found["contact"]["variables"],
        "optedIn": found["contact"]["optedIn"],
        "shown": [m["text"] for m in found["transcript"] if m["direction"] == "OUT"],
    }


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: f"{s.flow}:{s.phone[-2:]}")
async def test_a_simulation_agrees_with_a_real_run_of_each_example_flow(
    gql: GraphQLClient,
    runtime: Runtime,
    clock: ShiftedClock,
    examples: dict[str, str],  # noqa: F811 - the fixture imported above
    scenario: Scenario,
) -> None:
    definition = next(d for d in _definitions() if d["name"] == scenario.flow)
    began = time.perf_counter()
    found = await simulated(gql, definition, scenario)
    took = time.perf_counter() - began
    span = as_utc(datetime.fromisoformat(found["endedAt"])) - as_utc(
        datetime.fromisoformat(found["startedAt"])
    )
    print(
        f"\n[simulate] {scenario.flow}: {found['turns']} turns over {span} of virtual time in {took * 1000:.0f} ms"
    )
    expected = shape_real(await real(gql, runtime, clock, examples[scenario.flow], scenario))
    assert shape_simulated(found) == expected
    assert found["end"]["status"] == expected["runs"][-1][1]


def _definitions() -> list[dict[str, Any]]:
    from server.dev.seed import example_flows

    return example_flows()


REMINDER: dict[str, Any] = {
    "name": "Reminder draft",
    "start": "ask",
    "nodes": [
        {
            "id": "ask",
            "type": "message",
            "text": "¿Te guardo la talla {{trigger.size}}?",
            "buttons": [
                {"id": "yes", "title": "Sí", "next": "keep"},
                {"id": "no", "title": "No", "next": None},
            ],
            "no_reply": {"after": "2h", "next": "later"},
        },
        {"id": "keep", "type": "set_variable", "field": "size", "value": "{{trigger.size}}", "next": "tag"},
        {"id": "tag", "type": "tag", "add": ["keeps-size"], "next": "wait"},
        {"id": "wait", "type": "delay", "for": "2d", "next": "remind"},
        {"id": "remind", "type": "message", "text": "Tu talla {{contact.size}} sigue aquí", "next": None},
        {"id": "later", "type": "tag", "add": ["silent"], "next": None},
    ],
}


async def _store_and_redis(runtime: Runtime) -> tuple[dict[str, int], int]:
    database = runtime.database.db
    counts = {
        name: await database[name].count_documents({}) for name in await database.list_collection_names()
    }
    keys = [key async for key in runtime.redis.scan_iter(match=f"{runtime.prefix}*")]
    return counts, len(keys)


async def test_a_draft_runs_days_of_virtual_time_and_nothing_is_sent_or_stored(
    gql: GraphQLClient, runtime: Runtime
) -> None:
    """The window the customer opened by tapping "Sí" is closed two days later: the reminder is
    not sent (WINDOW_CLOSED), and the step says why; tags and variables follow each step."""
    await gql('mutation { createField(name: "size", type: TEXT) { id } }')
    await gql('mutation { createTag(name: "keeps-size", kind: SUPPORT) { id } }')
    await gql('mutation { createTag(name: "silent", kind: SUPPORT) { id } }')
    before = await _store_and_redis(runtime)
    scenario = Scenario(
        "Reminder draft",
        "+34600720001",
        [{"after": "30m", "button": "yes"}],
        {"windowOpen": True},
        {"size": "42"},
    )
    began = time.perf_counter()
    found = await simulated(gql, REMINDER, scenario)
    print(f"\n[simulate] a 2-day draft in {(time.perf_counter() - began) * 1000:.0f} ms")
    assert await _store_and_redis(runtime) == before
    assert (await gql('query { sandboxOutbox(phone: "+34600720001") { id } }'))["sandboxOutbox"] == []
    assert (await gql('query { contact(phone: "+34600720001") { id } }'))["contact"] is None
    transcript = [(m["direction"], m["text"], m["buttonId"]) for m in found["transcript"]]
    assert transcript == [("OUT", "¿Te guardo la talla 42?\n[1] Sí\n[2] No", None), ("IN", "Sí", "yes")]
    steps = {(s["node"], s["action"]): s for s in found["steps"]}
    assert steps[("keep", "variable_set")]["variables"] == {"size": "42"}
    assert steps[("keep", "variable_set")]["tags"] == []
    assert steps[("tag", "tagged")]["tags"] == ["keeps-size"]
    not_sent = steps[("remind", "message_not_sent")]
    assert (not_sent["outcome"], not_sent["windowOpen"]) == ("WINDOW_CLOSED", False)
    assert steps[("ask", "message_sent")]["windowOpen"] is True
    started = datetime.fromisoformat(found["startedAt"])
    assert datetime.fromisoformat(not_sent["at"]) - started == timedelta(days=2, minutes=30)
    end = found["end"]
    assert (end["status"], end["node"], end["reason"]) == ("FAILED", "remind", "WINDOW_CLOSED")
    assert "24-hour customer service window is closed" in end["why"]
    assert found["contact"]["tags"] == ["keeps-size"] and found["stopped"] is None


async def test_opt_in_rules_silence_and_waiting_for_ever(
    gql: GraphQLClient,
    examples: dict[str, str],  # noqa: F811 - the fixture imported above
) -> None:
    cart = next(d for d in _definitions() if d["name"] == "Abandoned cart")
    refused = await simulated(gql, cart, Scenario("Abandoned cart", "+34600720002", [], {}, CART))
    assert (refused["end"]["status"], refused["end"]["reason"]) == ("FAILED", "NO_OPT_IN")
    assert "marketing opt-in" in refused["end"]["why"] and refused["transcript"] == []
    asked = next(d for d in _definitions() if d["name"] == "Order update with feedback")
    found = await simulated(
        gql, asked, Scenario("Order update", "+34600720003", [{"after": "73h", "button": "bad"}], {}, ORDER)
    )
    assert found["end"]["status"] == "COMPLETED"  # ask_why's no-reply (1 d) took the run on
    waits = {
        "name": "Waits",
        "start": "q",
        "nodes": [
            {"id": "q", "type": "message", "text": "¿Y bien?", "on_reply": "t"},
            {"id": "t", "type": "tag", "add": ["x"]},
        ],
    }
    await gql('mutation { createTag(name: "x", kind: SUPPORT) { id } }')
    still = await simulated(gql, waits, Scenario("Waits", "+34600720004", [], {"windowOpen": True}))
    assert (still["end"]["status"], still["end"]["node"], still["end"]["at"]) == ("WAITING", "q", None)
    assert "waiting at 'q' for the customer" in still["end"]["why"]


async def test_a_flow_that_never_ends_stops_at_the_horizon(gql: GraphQLClient) -> None:
    looping = {
        "name": "Daily",
        "start": "wait",
        "nodes": [
            {"id": "wait", "type": "delay", "for": "1d", "next": "tag"},
            {"id": "tag", "type": "tag", "add": ["daily"], "next": "wait"},
        ],
    }
    await gql('mutation { createTag(name: "daily", kind: SUPPORT) { id } }')
    found = await simulated(gql, looping, Scenario("Daily", "+34600720005"))
    assert found["stopped"] == "HORIZON" and found["end"]["status"] == "WAITING"
    assert 395 <= found["turns"] <= 405


async def test_bad_input_is_refused_naming_where(gql: GraphQLClient) -> None:
    async def codes(definition: Any, script: list[dict[str, Any]], contact: Any = None) -> GraphQLErrors:
        with pytest.raises(GraphQLErrors) as refused:
            await gql(SIMULATE, d=definition, c=contact, s=script)
        return refused.value

    await gql('mutation { createField(name: "size", type: TEXT) { id } }')
    await gql('mutation { createTag(name: "keeps-size", kind: SUPPORT) { id } }')
    await gql('mutation { createTag(name: "silent", kind: SUPPORT) { id } }')
    bad_after = await codes(REMINDER, [{"text": "hola"}, {"after": "soon", "text": "sí"}])
    assert (
        bad_after.codes == ["INVALID_INPUT"]
        and bad_after.errors[0]["extensions"]["field"] == "script[1].after"
    )
    nothing = await codes(REMINDER, [{"after": "1h"}])
    assert nothing.errors[0]["extensions"]["field"] == "script[0]"
    unknown = await codes(REMINDER, [], {"opted_in": True})
    assert unknown.codes == ["INVALID_INPUT"] and "optedIn" in unknown.errors[0]["message"]
    broken = {
        **REMINDER,
        "nodes": [
            *REMINDER["nodes"][:-1],
            {"id": "later", "type": "tag", "add": ["silent"], "next": "nowhere"},
        ],
    }
    invalid = await codes(broken, [])
    assert invalid.codes == ["INVALID_FLOW"] and invalid.errors[0]["extensions"]["nodeId"] == "later"
