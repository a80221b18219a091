"""Loops, impossible waits and long flows, through GraphQL on the real store and Redis.

``connect_flow`` cycles with no wait on the way are an ERROR naming the cycle; a run that
repeats a node without waiting is stopped (``SPIN_LOOP``) but a long acyclic one runs to its end;
``delay until`` a past moment warns at validation and goes straight on at run time.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.integration.conftest import publish
from tests.integration.test_nodes import outbox, run_of, start_with
from tests.integration.test_skeleton_flow import say
from tests.support.catalog import ensure_catalog
from tests.support.graphql import GraphQLClient, GraphQLErrors

IMPORT = "mutation($d: JSON!) { importFlow(definition: $d) { id } }"
VALIDATE = "mutation($id: ID!) { validateFlow(id: $id) { nodeId severity code message } }"
PUBLISH = "mutation($id: ID!) { publishFlow(id: $id) { status } }"
RUNS = "query($p: String!) { contact(phone: $p) { runs { flowName status endReason steps { action outcome } } } }"


def connecting(name: str, target: str, wait_first: bool = False) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [{"id": "go", "type": "connect_flow", "flow": target}]
    if wait_first:
        nodes.insert(0, {"id": "ask", "type": "message", "text": "¿Seguimos?", "on_reply": "go"})
    return {"name": name, "start": nodes[0]["id"], "nodes": nodes}


async def imported(gql: GraphQLClient, definition: dict[str, Any]) -> str:
    return (await gql(IMPORT, d=definition))["importFlow"]["id"]


async def issues(gql: GraphQLClient, flow_id: str) -> list[dict[str, Any]]:
    return (await gql(VALIDATE, id=flow_id))["validateFlow"]


async def test_a_connection_cycle_without_a_wait_is_an_error_naming_it(gql: GraphQLClient) -> None:
    first = await imported(gql, connecting("Menú", "Ventas"))
    second = await imported(gql, connecting("Ventas", "Soporte"))
    third = await imported(gql, connecting("Soporte", "Menú"))
    for flow_id, cycle in (
        (first, "'Menú' → 'Ventas' → 'Soporte' → 'Menú'"),
        (second, "'Ventas' → 'Soporte' → 'Menú' → 'Ventas'"),
        (third, "'Soporte' → 'Menú' → 'Ventas' → 'Soporte'"),
    ):
        [issue] = [i for i in await issues(gql, flow_id) if i["code"] == "CONNECT_LOOP"]
        assert (issue["severity"], issue["nodeId"]) == ("ERROR", "go") and cycle in issue["message"]
    with pytest.raises(GraphQLErrors) as refused:
        await gql(PUBLISH, id=first)
    assert refused.value.codes == ["INVALID_FLOW"] and "CONNECT_LOOP" in str(refused.value)


async def test_a_cycle_with_a_wait_on_the_way_publishes_and_runs(gql: GraphQLClient) -> None:
    menu = await imported(gql, connecting("Menu", "Sales"))
    sales = await imported(gql, connecting("Sales", "Menu", wait_first=True))
    assert not [i for i in await issues(gql, menu) if i["severity"] == "ERROR"]
    await gql(PUBLISH, id=sales)
    await gql(PUBLISH, id=menu)
    phone = "+34600600001"
    await say(gql, phone, "hola")
    await start_with(gql, menu, phone)
    await say(gql, phone, "sí")  # Sales' question answered: back to Menu, which goes to Sales again
    runs = (await gql(RUNS, p=phone))["contact"]["runs"]
    assert [(r["flowName"], r["status"]) for r in runs][-2:] == [("Menu", "COMPLETED"), ("Sales", "WAITING")]


async def test_a_flow_connecting_to_itself_without_a_wait_cannot_publish(gql: GraphQLClient) -> None:
    flow_id = await imported(gql, connecting("Again", "Again"))
    [issue] = [i for i in await issues(gql, flow_id) if i["code"] == "CONNECT_LOOP"]
    assert "'Again' → 'Again'" in issue["message"]
    with pytest.raises(GraphQLErrors):
        await gql(PUBLISH, id=flow_id)


async def test_a_run_that_comes_back_to_a_node_without_waiting_is_stopped(gql: GraphQLClient) -> None:
    """A delay until a past moment does not wait: Loop → Back → Loop repeats, and is stopped."""
    loop = {
        "name": "Loop",
        "start": "mark",
        "nodes": [
            {"id": "mark", "type": "tag", "add": ["looped"], "next": "go"},
            {"id": "go", "type": "connect_flow", "flow": "Back"},
        ],
    }
    back = {
        "name": "Back",
        "start": "wait",
        "nodes": [
            {"id": "wait", "type": "delay", "until": "2020-01-01T09:00", "next": "go"},
            {"id": "go", "type": "connect_flow", "flow": "Loop"},
        ],
    }
    loop_id = await imported(gql, loop)
    await ensure_catalog(gql, loop)
    await publish(gql, back)
    await gql(PUBLISH, id=loop_id)
    phone = "+34600600002"
    first = await start_with(gql, loop_id, phone)
    assert first["status"] == "COMPLETED"
    runs = (await gql(RUNS, p=phone))["contact"]["runs"]
    assert [(r["flowName"], r["status"], r["endReason"]) for r in runs] == [
        ("Loop", "COMPLETED", "connected"),
        ("Back", "COMPLETED", "connected"),
        ("Loop", "FAILED", "SPIN_LOOP"),
    ]
    assert ["spin_stopped", "SPIN_LOOP"] in [[s["action"], s["outcome"]] for s in runs[-1]["steps"]]


async def test_delay_until_a_past_moment_warns_and_goes_straight_on(gql: GraphQLClient) -> None:
    flow = {
        "name": "Christmas past",
        "start": "wait",
        "nodes": [
            {"id": "wait", "type": "delay", "until": "2025-12-24T10:00", "next": "hi"},
            {"id": "hi", "type": "message", "text": "¡Feliz Navidad!", "next": None},
        ],
    }
    flow_id = await imported(gql, flow)
    [issue] = [i for i in await issues(gql, flow_id) if i["code"] == "DELAY_IN_THE_PAST"]
    assert (issue["severity"], issue["nodeId"]) == ("WARNING", "wait")
    assert "2025-12-24T10:00" in issue["message"] and "Europe/Madrid" in issue["message"]
    await gql(PUBLISH, id=flow_id)
    phone = "+34600600003"
    await say(gql, phone, "hola")
    run = await start_with(gql, flow_id, phone)
    assert run["status"] == "COMPLETED"
    steps = (await run_of(gql, run["id"]))["steps"]
    delay = next(s for s in steps if s["action"] == "delay")
    assert delay["outcome"] == "passed" and "already passed" in delay["detail"]["why"]
    assert [m["text"] for m in await outbox(gql, phone)] == ["¡Feliz Navidad!"]


async def test_a_future_delay_until_gets_no_warning(gql: GraphQLClient, runtime: Any) -> None:
    later = (runtime.clock.now() + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M")
    flow = {"name": "Later", "start": "wait", "nodes": [{"id": "wait", "type": "delay", "until": later}]}
    assert await issues(gql, await imported(gql, flow)) == []


async def test_a_500_node_chain_runs_to_its_end(gql: GraphQLClient) -> None:
    nodes: list[dict[str, Any]] = []
    for i in range(500):
        following = f"n{i + 1}" if i < 499 else None
        if i % 2:
            nodes.append({"id": f"n{i}", "type": "tag", "add": [f"step-{i % 5}"], "next": following})
        else:
            branch = {"name": "never", "segment": {"tag": "nobody-has-this"}, "next": following}
            nodes.append({"id": f"n{i}", "type": "condition", "branches": [branch], "otherwise": following})
    flow_id = await publish(gql, {"name": "Long chain", "start": "n0", "nodes": nodes})
    run = await start_with(gql, flow_id, "+34600600004")
    assert run["status"] == "COMPLETED"
    found = await gql(
        "query($id: ID!) { run(id: $id) { endReason stepsDropped steps { node action } } }", id=run["id"]
    )
    detail = found["run"]
    assert detail["endReason"] == "completed"
    assert detail["steps"][0]["action"] == "started" and detail["steps"][-2]["node"] == "n499"
    assert len(detail["steps"]) + detail["stepsDropped"] == 502  # started, 500 nodes, ended
