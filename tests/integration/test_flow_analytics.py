"""``flowAnalytics`` / ``flowAnalyticsUpdated`` through GraphQL on the real store and Redis.

Counters are pre-aggregated after each commit; these tests hold them to what the stored runs
say (``tests/support/analytics.py`` works the numbers out from steps alone): after a mixed run of
many contacts, after recovery passes that offer every carried entry again, and after a process
that committed turns but never stored their counters (as one that dies right after each commit).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from server.actors.contact_actor import event_id
from server.actors.events import TagContact, TimerFired
from server.actors.message_statuses import StatusReport
from server.clock import SystemClock
from server.config import Settings
from server.machines.flow_counts import COUNTS_FIELD
from server.operations import contacts as contact_ops
from server.runtime import Runtime
from server.store.database import Database
from server.store.flow_counters import FlowCounterRepository, Pending
from tests.integration.conftest import WORKSPACE, client_for, make_workspace, publish
from tests.support.analytics import ANALYTICS, expected_from_runs, normalized
from tests.support.clock import ShiftedClock
from tests.support.contacts import key_of
from tests.support.graphql import GraphQLClient, GraphQLErrors, eventually
from tests.support.live import live_server
from tests.support.network import HostsResolver
from tests.support.ws import GraphQLWebSocket

SURVEY: dict[str, Any] = {
    "name": "Survey",
    "start": "greet",
    "nodes": [
        {
            "id": "greet",
            "type": "message",
            "text": "Hola {{contact.first_name}}, ¿te ayudamos?",
            "buttons": [
                {"id": "yes", "title": "Sí", "next": "ask_city"},
                {"id": "no", "title": "No", "next": "bye"},
            ],
            "no_reply": {"after": "2h", "next": "nudge"},
        },
        {
            "id": "ask_city",
            "type": "message",
            "text": "¿De qué ciudad eres?",
            "on_reply": "save_city",
            "no_reply": {"after": "1d", "next": None},
        },
        {
            "id": "save_city",
            "type": "set_variable",
            "field": "city",
            "value": {"from": "reply"},
            "next": "route",
        },
        {
            "id": "route",
            "type": "condition",
            "branches": [
                {"name": "VIP", "segment": {"tag": "vip"}, "next": "vip"},
                {
                    "name": "Madrid",
                    "segment": {"var": "city", "op": "eq", "value": "Madrid"},
                    "next": "madrid",
                },
            ],
            "otherwise": "done",
        },
        {"id": "vip", "type": "tag", "add": ["vip-seen"], "next": None},
        {"id": "madrid", "type": "tag", "add": ["madrid"], "next": None},
        {"id": "done", "type": "tag", "add": ["done"], "next": None},
        {"id": "nudge", "type": "message", "text": "¿Sigues ahí?", "next": None},
        {"id": "bye", "type": "tag", "add": ["bye"], "next": None},
    ],
}
VARIANTS = 10


def _actors(runtime: Runtime) -> Any:
    assert runtime.actors is not None
    return runtime.actors


async def _document(runtime: Runtime, phone: str) -> dict[str, Any]:
    document = await runtime.contacts.load(await key_of(runtime, WORKSPACE, phone))
    assert document is not None
    return document


async def _sent(runtime: Runtime, phone: str, node: str) -> str:
    """The id of the latest message the contact's last run sent at ``node``."""
    run = (await _document(runtime, phone))["runs"][-1]
    return [
        s["detail"]["message"] for s in run["steps"] if s["node"] == node and s["action"] == "message_sent"
    ][-1]


async def _fire_timer(runtime: Runtime, phone: str) -> None:
    """The contact's pending timer comes due: the event its arq job sends."""
    [timer] = (await _document(runtime, phone))["timers"]
    await _actors(runtime).ask((await key_of(runtime, WORKSPACE, phone)), TimerFired(timer["id"]))


async def _status(runtime: Runtime, message_id: str, status: str, code: str | None = None) -> None:
    """A provider status report for a sandbox message (its provider id is its own id)."""
    report = StatusReport(
        provider_id=message_id,
        status=status,
        at=runtime.clock.now(),
        error_code=code,
        error="Message undeliverable" if code else None,
    )
    assert await runtime.ledger.report(WORKSPACE, None, report) == "applied"


async def play(runtime: Runtime, flow_id: str, phone: str, variant: int) -> None:
    """One contact's part of the mixed run: every path of ``SURVEY`` and some statuses."""

    async def say(text: str | None = None, button: str | None = None) -> None:
        await contact_ops.customer_says(runtime.services, WORKSPACE, phone, text, button)

    async def start() -> dict[str, Any]:
        return await contact_ops.start_flow(runtime.services, WORKSPACE, flow_id, phone, {"source": "test"})

    if variant != 4:  # the customer writes first: the 24-hour window is open
        await say("hola")
    if variant == 6:
        await _actors(runtime).ask(
            (await key_of(runtime, WORKSPACE, phone)), TagContact(event_id(), add=("vip",))
        )
    run = await start()
    if variant in (0, 1, 6):
        await say(button="yes")
        await say({0: "Madrid", 1: "Sevilla", 6: "Bilbao"}[variant])
    elif variant == 2:
        await say(button="no")
    elif variant == 3:
        await _fire_timer(runtime, phone)  # no reply: the nudge
    elif variant == 5:
        await say("quizás")  # matches no button: asked again
        await say(button="yes")
        await _fire_timer(runtime, phone)  # no city: ends
    elif variant == 7:
        await contact_ops.stop_run(runtime.services, WORKSPACE, run["id"])
    elif variant == 8:
        greet = await _sent(runtime, phone, "greet")
        await _status(runtime, greet, "sent")
        await _status(runtime, greet, "delivered")
        await _status(runtime, greet, "read")
        await say(button="yes")
        await _status(runtime, await _sent(runtime, phone, "ask_city"), "delivered")
        await say("Madrid")
    elif variant == 9:
        await _status(runtime, await _sent(runtime, phone, "greet"), "failed", code="131026")


async def stored_runs(runtime: Runtime, flow_id: str) -> list[dict[str, Any]]:
    return await runtime.database.collection("runs").find({"flow_id": flow_id}).to_list()


async def analytics(gql: GraphQLClient, flow_id: str, **range_: Any) -> dict[str, Any]:
    return (await gql(ANALYTICS, f=flow_id, **range_))["flowAnalytics"]


async def agree(gql: GraphQLClient, runtime: Runtime, flow_id: str, timeout: float = 60.0) -> dict[str, Any]:
    """Wait until the counters say what the stored runs say (status reports land a moment later)."""

    async def both() -> tuple[dict[str, Any], dict[str, Any]]:
        expected = expected_from_runs(await stored_runs(runtime, flow_id), SURVEY)
        return normalized(await analytics(gql, flow_id)), expected

    found, _ = await eventually(both, lambda pair: pair[0] == pair[1], timeout=timeout, interval=0.2)
    return found


async def mixed_run(runtime: Runtime, gql: GraphQLClient, contacts: int) -> tuple[str, dict[str, Any]]:
    flow_id = await publish(gql, SURVEY)
    gate = asyncio.Semaphore(100)

    async def one(n: int) -> None:
        async with gate:
            await play(runtime, flow_id, f"+3461{n:07d}", n % VARIANTS)

    order = list(range(contacts))
    random.Random(17).shuffle(order)
    await asyncio.gather(*(one(n) for n in order))
    return flow_id, await agree(gql, runtime, flow_id)


async def check_mixed_run(runtime: Runtime, gql: GraphQLClient, contacts: int) -> None:
    flow_id, found = await mixed_run(runtime, gql, contacts)
    share = contacts // VARIANTS
    assert found["runs"]["runsStarted"] == contacts
    assert found["runs"]["runsFailed"] == 2 * share  # WINDOW_CLOSED and SEND_FAILED:131026
    greet = found["nodes"]["greet"]
    assert greet["buttons"] == [("no", share), ("yes", 5 * share)]
    assert greet["failures"] == [("SEND_FAILED:131026", share), ("WINDOW_CLOSED", share)]
    assert greet["messages"]["delivered"] == greet["messages"]["read"] == share
    assert greet["messages"]["errors"] == [("131026", share)]
    assert found["nodes"]["route"]["branches"] == [("Madrid", 2 * share), ("VIP", share)]
    # Every contact's document still carries its last turn's counters (they are dropped at its
    # next commit): recovery passes offer them all again, and nothing is counted twice.
    carried = await runtime.database.collection("contacts").count_documents(
        {f"{COUNTS_FIELD}.0": {"$exists": True}}
    )
    assert carried >= contacts // 2
    await runtime.recover_now()
    await runtime.recover_now()
    assert normalized(await analytics(gql, flow_id)) == found


async def test_flow_analytics_counts_equal_the_stored_steps_after_a_mixed_run(
    runtime: Runtime, gql: GraphQLClient
) -> None:
    await check_mixed_run(runtime, gql, 1_000)


@pytest.mark.full
@pytest.mark.timeout(600)
async def test_flow_analytics_counts_equal_the_stored_steps_after_a_5000_contact_mixed_run(
    runtime: Runtime, gql: GraphQLClient
) -> None:
    await check_mixed_run(runtime, gql, 5_000)


async def test_flow_analytics_per_node_numbers(runtime: Runtime, gql: GraphQLClient) -> None:
    flow_id, found = await mixed_run(runtime, gql, VARIANTS)
    assert found["runs"] == {
        "runsStarted": 10,
        "runsNotStarted": 0,
        "runsCompleted": 7,
        "runsFailed": 2,
        "runsCancelled": 1,
    }
    assert found["endings"] == [
        ("cancelled", "stopped", 1),
        ("completed", "completed", 7),
        ("failed", "SEND_FAILED:131026", 1),
        ("failed", "WINDOW_CLOSED", 1),
    ]
    greet = found["nodes"]["greet"]
    assert (greet["entered"], greet["waited"], greet["noReply"], greet["failed"]) == (10, 9, 1, 2)
    assert greet["messages"] == {
        "queued": 10,
        "sent": 1,
        "delivered": 1,
        "read": 1,
        "failed": 1,
        "errors": [("131026", 1)],
    }
    assert ("reply_not_understood", "reprompted", 1) in greet["steps"]  # asked again: not a new entry
    assert ("message_not_sent", "WINDOW_CLOSED", 1) in greet["steps"]
    city = found["nodes"]["ask_city"]
    assert (city["entered"], city["waited"], city["replied"], city["noReply"]) == (5, 5, 4, 1)
    assert city["messages"]["delivered"] == 1
    assert found["nodes"]["save_city"]["steps"] == [("variable_set", "ok", 4)]
    assert found["nodes"]["route"]["branches"] == [("Madrid", 2), ("VIP", 1)]
    assert found["nodes"]["route"]["steps"] == [("condition", "matched", 3), ("condition", "otherwise", 1)]
    assert found["nodes"]["nudge"]["entered"] == 1 and "bye" in found["nodes"]
    everything = await analytics(gql, flow_id)
    assert [n["nodeId"] for n in everything["nodes"]] == [n["id"] for n in SURVEY["nodes"]]


async def test_another_workspaces_flow_is_not_found(runtime: Runtime, gql: GraphQLClient) -> None:
    flow_id = await publish(gql, SURVEY)
    other = client_for(runtime, await make_workspace(runtime, "ws_other"))
    try:
        with pytest.raises(GraphQLErrors) as refused:
            await analytics(other, flow_id)
        assert refused.value.codes == ["NOT_FOUND"]
        with pytest.raises(GraphQLErrors) as bad_range:
            await analytics(gql, flow_id, **{"from": "2026-05-02T00:00:00Z", "to": "2026-05-01T00:00:00Z"})
        assert bad_range.value.codes == ["INVALID_INPUT"]
    finally:
        await other.http.aclose()


# --- time ranges and crashes: runtimes of the test's own ------------------------------------


@pytest.fixture
def clock() -> ShiftedClock:
    return ShiftedClock(SystemClock())


@pytest.fixture
async def shifted_runtime(fast_settings: Settings, clock: ShiftedClock) -> AsyncIterator[Runtime]:
    runtime = Runtime(fast_settings, clock=clock, resolver=HostsResolver())
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


async def test_from_and_to_select_the_hours_counted(shifted_runtime: Runtime, clock: ShiftedClock) -> None:
    runtime = shifted_runtime
    gql = client_for(runtime, await make_workspace(runtime))
    try:
        flow_id = await publish(gql, SURVEY)
        first = runtime.clock.now()
        for n in range(3):
            await play(runtime, flow_id, f"+3462{n:07d}", 2)  # says no: bye
        clock.advance(timedelta(days=3, hours=5))
        later = runtime.clock.now()
        for n in range(3, 5):
            await play(runtime, flow_id, f"+3462{n:07d}", 2)

        def iso(moment: datetime) -> str:
            return moment.astimezone(UTC).isoformat()

        whole = await analytics(gql, flow_id)
        early = await analytics(gql, flow_id, **{"from": iso(first - timedelta(minutes=1)), "to": iso(first)})
        late = await analytics(gql, flow_id, **{"from": iso(later)})
        spanning = await analytics(
            gql, flow_id, **{"from": iso(first - timedelta(days=2)), "to": iso(later + timedelta(hours=1))}
        )
        before = await analytics(gql, flow_id, **{"to": iso(later - timedelta(days=1))})
        assert [a["runsStarted"] for a in (whole, early, late, spanning, before)] == [5, 3, 2, 5, 3]
        bye = {n["nodeId"]: n for n in late["nodes"]}["bye"]
        assert bye["entered"] == 2
        one_version = await gql(
            "query($f: ID!) { flowAnalytics(flowId: $f, version: 1) { version runsStarted from to } }",
            f=flow_id,
        )
        assert one_version["flowAnalytics"] == {"version": 1, "runsStarted": 5, "from": None, "to": None}
        with pytest.raises(GraphQLErrors) as missing:
            await gql("query($f: ID!) { flowAnalytics(flowId: $f, version: 7) { runsStarted } }", f=flow_id)
        assert missing.value.codes == ["NOT_FOUND"]
    finally:
        await gql.http.aclose()


async def test_counters_a_crash_left_unstored_are_counted_once_after_the_restart(
    fast_settings: Settings,
) -> None:
    """The first process commits every turn but stores no counter (as if it died after each
    commit); the process started after it counts what the documents carry, once, however often
    recovery and later turns offer the same entries again."""
    settings = fast_settings.model_copy(update={"contact_scan_interval_seconds": 0.5})
    # Its one recovery pass runs at start, before any turn: it never counts anything either.
    crashed = Runtime(
        settings.model_copy(update={"recovery_interval_seconds": 3600}), resolver=HostsResolver()
    )
    await crashed.start()
    gql = client_for(crashed, await make_workspace(crashed))
    phones = [f"+3463{n:07d}" for n in range(12)]
    try:
        flow_id = await publish(gql, SURVEY)
        assert crashed._effects is not None
        crashed._effects.counters = None  # commits go on; their counters are never stored
        await asyncio.gather(*(play(crashed, flow_id, phone, 5) for phone in phones[:6]))  # ends at a wait
        await asyncio.gather(*(play(crashed, flow_id, phone, 3) for phone in phones[6:]))
        assert (await analytics(gql, flow_id))["runsStarted"] == 0
    finally:
        await gql.http.aclose()
        await crashed.stop()
    restarted = Runtime(settings, resolver=HostsResolver())
    await restarted.start()  # its recovery pass counts what the documents still carry
    gql = client_for(restarted, await make_workspace(restarted))
    try:
        await agree(gql, restarted, flow_id)
        for phone in phones[:3]:  # later turns offer the carried entries again with their own
            await contact_ops.customer_says(restarted.services, WORKSPACE, phone, "hola otra vez", None)
        await restarted.recover_now()
        found = await agree(gql, restarted, flow_id)
        assert found["runs"]["runsStarted"] == 12 and found["nodes"]["nudge"]["entered"] == 6
    finally:
        await gql.http.aclose()
        await restarted.stop()


async def test_flow_analytics_updated_pushes_the_new_totals(
    runtime: Runtime, api_key: str, gql: GraphQLClient
) -> None:
    flow_id = await publish(gql, SURVEY)
    watch = (
        "subscription($f: ID!) { flowAnalyticsUpdated(flowId: $f) { runsStarted nodes { nodeId entered } } }"
    )
    async with live_server(runtime) as (host, _), GraphQLWebSocket(f"ws://{host}/graphql", api_key) as ws:
        await ws.subscribe("a", watch, f=flow_id)
        assert (await ws.next_data("a"))["flowAnalyticsUpdated"]["runsStarted"] == 0
        await play(runtime, flow_id, "+34640000001", 2)
        seen = 0
        while seen < 1:
            seen = (await ws.next_data("a"))["flowAnalyticsUpdated"]["runsStarted"]
        await asyncio.gather(*(play(runtime, flow_id, f"+3464000{n:04d}", 2) for n in range(2, 12)))
        said_no = 0
        while said_no < 11:  # each update has the totals of its moment: the last one has them all
            update = (await ws.next_data("a"))["flowAnalyticsUpdated"]
            said_no = {n["nodeId"]: n["entered"] for n in update["nodes"]}["bye"]
        assert update["runsStarted"] == 11


async def test_processes_offering_the_same_entries_at_once_count_them_once(fast_settings: Settings) -> None:
    """Recovery in one process and a live actor in another (or two recoveries) hand in the same
    carried entries concurrently: their transactions conflict on the contacts' marks, the losers
    try again and find them counted."""
    databases = [Database(fast_settings.mongodb_uri or "", fast_settings.mongodb_db) for _ in range(4)]
    stores = [FlowCounterRepository(database) for database in databases]
    now = datetime.now(UTC)

    def carried(contact: int) -> Pending:
        entries = [{"v": v, "at": now, "c": [["flow_x", 1, "ask", ["entered"], 1]]} for v in range(1, 6)]
        return (f"{WORKSPACE}:+3465{contact:07d}", WORKSPACE, entries)

    try:
        await asyncio.gather(*(store.apply([carried(n) for n in range(20)]) for store in stores))
        totals = await stores[0].totals(WORKSPACE, "flow_x", None, None, None, now)
        assert totals.nodes["ask"][("entered",)] == 20 * 5
    finally:
        for database in databases:
            await database.close()
