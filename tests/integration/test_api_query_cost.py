"""Query cost (issue 15, finding 3): a fan-out query is refused, with its cost, before it reads
the store; a legitimate nested query reads the store once per level; the rate window spends cost.

Store round trips are counted with pymongo's command monitoring on the server's own client:
every command that names the test workspace (each tenant read does) except the API key lookup.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from graphql import parse
from pymongo.monitoring import CommandFailedEvent, CommandListener, CommandStartedEvent, CommandSucceededEvent

from server.clock import SystemClock
from server.config import Settings
from server.graphql.query_cost import operation_cost
from server.graphql.schema import schema
from server.ids import ContactKey
from server.runtime import Runtime
from server.store.contacts import new_contact
from tests.integration.conftest import WORKSPACE, client_for, make_workspace
from tests.support.graphql import GraphQLClient
from tests.support.live import live_server
from tests.support.ws import GraphQLWebSocket

PHONE = "+34600111000"
RUNS = 20
CYCLE = "query($p: String!) { contact(phone: $p) { runs { contact { runs { contact { runs { contact { id } } } } } } } }"
NESTED = """query($p: String!) { contact(phone: $p) { id agent { id } runs { id contact { id agent { email }
    runs { id contact { id agent { name } } } } } } }"""


CREATE_AGENT = 'mutation { createAgent(email: "ana@shop.example", name: "Ana") { id } }'
NESTED_COST = operation_cost(schema._schema, parse(NESTED))
BUDGET = operation_cost(schema._schema, parse(CREATE_AGENT)) + 2 * NESTED_COST  # two NESTED fit


class TenantReads(CommandListener):
    """Commands the server sends about the test workspace, API key lookups left out."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, str]] = []
        self.recording = False

    def started(self, event: CommandStartedEvent) -> None:
        collection = event.command.get(event.command_name)
        if self.recording and collection != "api_keys" and WORKSPACE in str(event.command):
            self.commands.append((event.command_name, str(collection)))

    def succeeded(self, event: CommandSucceededEvent) -> None:
        pass

    def failed(self, event: CommandFailedEvent) -> None:
        pass

    def on(self, collection: str) -> int:
        return sum(1 for _, name in self.commands if name == collection)


@pytest.fixture
def reads() -> TenantReads:
    return TenantReads()


@pytest.fixture
async def counted_runtime(fast_settings: Settings, reads: TenantReads) -> AsyncIterator[Runtime]:
    runtime = Runtime(fast_settings.model_copy(update={"rate_limit_points": BUDGET}), store_listeners=[reads])
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


async def contact_with_runs(runtime: Runtime, gql: GraphQLClient) -> None:
    """A contact with ``RUNS`` ended runs and an assigned agent, written as the actor would."""
    agent = await gql(CREATE_AGENT)
    now = SystemClock().now()
    contact = new_contact(ContactKey(WORKSPACE, PHONE), now)
    contact["assigned_agent"] = agent["createAgent"]["id"]
    contact["runs"] = [
        {"id": f"run_{n}", "flow_id": "flow_x", "flow_name": "X", "version": 1, "status": "completed"}
        | {"steps": [], "trigger": {}, "started_at": now, "ended_at": now}
        for n in range(RUNS)
    ]
    await runtime.database.collection("contacts").insert_one(contact)


def codes(body: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in body.get("errors", [])]


async def test_a_fan_out_query_is_refused_with_its_cost_before_any_store_read(
    counted_runtime: Runtime, reads: TenantReads
) -> None:
    gql = client_for(counted_runtime, await make_workspace(counted_runtime))
    try:
        await contact_with_runs(counted_runtime, gql)
        reads.recording = True
        body = await gql.raw(CYCLE, p=PHONE)
        reads.recording = False
    finally:
        await gql.http.aclose()
    assert codes(body) == ["QUERY_TOO_COSTLY"], body
    extensions = body["errors"][0]["extensions"]
    limit = counted_runtime.settings.max_query_cost
    assert extensions["cost"] == 16841 > extensions["limit"] == limit
    assert body.get("data") is None
    assert reads.commands == []  # not even the root contact was read


async def test_a_nested_query_reads_the_store_once_per_level(
    counted_runtime: Runtime, reads: TenantReads
) -> None:
    gql = client_for(counted_runtime, await make_workspace(counted_runtime))
    try:
        await contact_with_runs(counted_runtime, gql)
        reads.recording = True
        data = await gql(NESTED, p=PHONE)
        reads.recording = False
    finally:
        await gql.http.aclose()
    contact = data["contact"]
    assert len(contact["runs"]) == RUNS and len(contact["runs"][0]["contact"]["runs"]) == RUNS
    assert contact["runs"][-1]["contact"]["runs"][-1]["contact"]["agent"]["name"] == "Ana"
    # Before batching: 20 + 400 contact reads and 421 agent reads. Now: the root contact, one
    # batched read for every run's contact (the same one, then known), one for the agent.
    assert reads.on("contacts") <= 3, reads.commands
    assert reads.on("agents") <= 1, reads.commands


async def test_the_rate_window_spends_each_operations_cost(counted_runtime: Runtime) -> None:
    key = await make_workspace(counted_runtime)
    gql = client_for(counted_runtime, key)
    try:
        await contact_with_runs(counted_runtime, gql)
        spent = [await gql.raw(NESTED, p=PHONE) for _ in range(2)]  # 1,262 points each: fits
        refused = [
            await gql.http.post("/graphql", json=body, headers={"Authorization": f"Bearer {key}"})
            for body in ({"query": NESTED, "variables": {"p": PHONE}}, {"query": "{ workspace { id } }"})
        ]
    finally:
        await gql.http.aclose()
    assert NESTED_COST == 1262 and all("errors" not in body for body in spent), spent
    assert [r.status_code for r in refused] == [429, 429]
    assert [codes(r.json()) for r in refused] == [["RATE_LIMITED"]] * 2
    assert "cost points" in refused[0].json()["errors"][0]["message"]


async def test_a_too_costly_subscription_is_refused_on_the_websocket(counted_runtime: Runtime) -> None:
    key = await make_workspace(counted_runtime)
    watch = "subscription { runUpdated { contact { runs { contact { runs { contact { runs { contact { id } } } } } } } } }"
    async with live_server(counted_runtime) as (host, _), GraphQLWebSocket(f"ws://{host}/graphql", key) as ws:
        await ws.subscribe("1", watch)
        message = await ws.receive()
        while message["type"] == "ping":
            message = await ws.receive()
    errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
    assert message["id"] == "1" and errors[0]["extensions"]["code"] == "QUERY_TOO_COSTLY", message
