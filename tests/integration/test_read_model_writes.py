"""The read models a committed turn writes take the store's cheapest write that keeps them correct.

Issue 19: on the embedded store an insert costs a fraction of an update or a delete of the same
document (a run's guarded replace-upsert 1.17 ms against 0.42 for an insert; a flow-count mark's
``$max`` upsert 0.53 against 0.09; a one-id delete 0.48 against 0.30 under one ``$in`` filter).
So a run begun by the turn is inserted and a contact's first mark is inserted (applied inbound
messages leave the journal a group at a time: ``test_inbound_journal.py``). Each keeps its
guarantee: a projection meeting a stored one never goes backwards, a count is stored once, an
applied message is applied.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from server.config import Settings
from server.runtime import Runtime
from server.store.database import Database
from server.store.flow_counters import FlowCounterRepository
from server.store.runs import RunRepository
from tests.integration.conftest import WORKSPACE, publish, statements
from tests.integration.test_turn_effects import commit_losing_effects, customer_answers, start_waiting_run
from tests.support.contacts import key_of
from tests.support.flows import skeleton_flow
from tests.support.graphql import GraphQLClient

PHONE = "+34600777001"  # the contact of ``test_turn_effects``' helpers
TRIGGER = "mutation($i: InboundTriggerInput!) { createInboundTrigger(input: $i) { id } }"


@pytest.fixture
def fast_settings(fast_settings: Settings) -> Settings:
    return fast_settings.model_copy(update={"store_stats": True})


def contact_with_run(version: int, status: str, node: str) -> dict[str, Any]:
    return {
        "_id": f"{WORKSPACE}:+34600777002",
        "workspace_id": WORKSPACE,
        "phone": "+34600777002",
        "version": version,
        "runs": [{"id": "run_projected", "flow_id": "flow_x", "version": 1, "status": status, "node": node}],
    }


async def test_a_run_begun_by_a_turn_is_inserted_and_its_later_turns_replace_it(
    runtime: Runtime, gql: GraphQLClient
) -> None:
    before = statements(runtime.database, "runs")
    run_id = await start_waiting_run(runtime, gql)
    begun = statements(runtime.database, "runs")
    assert begun.get("insert", 0) - before.get("insert", 0) == 1
    assert begun.get("update", 0) == before.get("update", 0)  # no replace-upsert for a new run
    projected = await runtime.runs.get(WORKSPACE, run_id)
    assert projected is not None and projected["status"] == "waiting"

    _, event = await customer_answers(runtime, "Sí, por favor")
    assert runtime.actors is not None
    await runtime.actors.ask(await key_of(runtime, WORKSPACE, PHONE), event)
    answered = statements(runtime.database, "runs")
    assert answered.get("update", 0) - begun.get("update", 0) == 1  # the run was there: replaced
    assert answered.get("insert", 0) == begun.get("insert", 0)
    projected = await runtime.runs.get(WORKSPACE, run_id)
    assert projected is not None and projected["status"] == "completed"
    listed = await gql(
        "query($c: ID!) { runs(contactId: $c) { edges { node { id status } } } }",
        c=(await key_of(runtime, WORKSPACE, PHONE)).doc_id,
    )
    assert {"id": run_id, "status": "COMPLETED"} in [edge["node"] for edge in listed["runs"]["edges"]]


async def test_a_run_insert_meeting_a_stored_projection_keeps_the_newest(counted: Database) -> None:
    """A redo after a crash or a run handed over by a merge: the insert falls back to the guarded
    replace, so a newer projection is written and an older one never lands last."""
    runs = RunRepository(counted)
    await runs.project(contact_with_run(1, "waiting", "ask"), {"run_projected"}, started={"run_projected"})
    await runs.project(
        contact_with_run(3, "completed", "thanks"), {"run_projected"}, started={"run_projected"}
    )
    newest = await runs.get(WORKSPACE, "run_projected")
    assert newest is not None and (newest["status"], newest["node"], newest["contact_version"]) == (
        "completed",
        "thanks",
        3,
    )
    await runs.project(contact_with_run(2, "waiting", "ask"), {"run_projected"}, started={"run_projected"})
    kept = await runs.get(WORKSPACE, "run_projected")
    assert kept is not None and (kept["status"], kept["contact_version"]) == ("completed", 3)
    assert statements(counted, "runs") == {"insert": 3, "update": 2}


async def test_a_run_whose_first_projection_a_crash_cut_is_projected_when_the_message_comes_again(
    runtime: Runtime, gql: GraphQLClient
) -> None:
    """The turn that begins a run is cut after its commit, before the run's insert: recovery's
    redelivery of the inbound message (its pending mark) projects it, and marks the message applied."""
    flow_id = await publish(gql, skeleton_flow("Begun", no_reply_after="PT1H"))
    await gql('mutation($p: String!) { sandboxInbound(phone: $p, text: "hola") }', p=PHONE)  # window open
    await gql(TRIGGER, i={"flowId": flow_id, "kind": "ANY_MESSAGE", "priority": 0})
    record, event = await customer_answers(runtime, "¿Qué tenéis?")
    stored = await commit_losing_effects(runtime, event)
    key = await key_of(runtime, WORKSPACE, PHONE)
    [run] = [r for r in stored["runs"] if r["flow_id"] == flow_id]
    assert await runtime.runs.get(WORKSPACE, run["id"]) is None  # its insert was cut
    assert not await runtime.messages.applied(record["_id"])

    assert runtime.actors is not None
    assert (await runtime.actors.ask(key, event)).duplicate  # what recovery does with a pending mark
    projected = await runtime.runs.get(WORKSPACE, run["id"])
    assert projected is not None and projected["status"] == "waiting"
    assert projected["contact_version"] == stored["version"]
    assert await runtime.messages.applied(record["_id"])


async def test_a_contacts_first_flow_count_mark_is_inserted_and_counts_stay_exactly_once(
    counted: Database,
) -> None:
    counters = FlowCounterRepository(counted)
    now = datetime.now(UTC)
    contact = f"{WORKSPACE}:+34600777003"

    def entry(version: int) -> dict[str, Any]:
        return {"v": version, "at": now, "c": [["flow_x", 1, "ask", ["entered"], 1]]}

    await counters.add(contact, WORKSPACE, [entry(1)])
    assert statements(counted, "flow_count_marks") == {"insert": 1}
    await counters.add(contact, WORKSPACE, [entry(1), entry(2)])  # 1 again: a reload handing it in
    assert statements(counted, "flow_count_marks") == {"insert": 1, "update": 1}
    await counters.apply([(contact, WORKSPACE, [entry(1), entry(2)])])  # recovery: nothing new
    assert statements(counted, "flow_count_marks") == {"insert": 1, "update": 1}
    totals = await counters.totals(WORKSPACE, "flow_x", None, None, None, now)
    assert totals.nodes["ask"][("entered",)] == 2
    mark = await counted.collection("flow_count_marks").find_one({"_id": contact})
    assert mark == {"_id": contact, "v": 2, "workspace_id": WORKSPACE}
