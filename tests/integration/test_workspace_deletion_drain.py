"""Deleting a workspace while work of it is in flight, on the real store and Redis: the deletion
waits until that work has ended (here, and on every other live replica, which acknowledges
through Redis), so nothing of the workspace is written after its passes; work arriving later is
refused, also once the workspace document is gone. A replica that does not acknowledge in time
leaves the workspace ``DELETING``, and deleting it again finishes the job."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from server.actors.events import InboundMessage
from server.channels.whatsapp.signature import signature_for
from server.config import Settings
from server.errors import WorkspaceDisabled
from server.ids import ContactKey
from server.runtime import Runtime
from tests.integration.conftest import publish
from tests.integration.workspace_support import (
    DELETE,
    OPERATOR_KEY,
    OperatorClient,
    asgi_http,
    create_workspace,
    redis_mentions,
    store_mentions,
    workspace_ids,
)
from tests.support.clock import ShiftedClock
from tests.support.graph_api_fake import GraphApiFake
from tests.support.graphql import GraphQLClient, eventually
from tests.support.network import HostsResolver
from tests.support.whatsapp import connect_fake
from tests.support.whatsapp_webhooks import payload

OTHER_REPLICA = "replica-b"
ANY_MESSAGE = "mutation($f: ID!) { createInboundTrigger(input: {flowId: $f, kind: ANY_MESSAGE}) { id } }"
STATUS = "query($id: ID!) { workspace(id: $id) { status } }"
WAITS = "the deletion waits for"  # the log line of a deletion waiting for work in flight


@pytest.fixture
def drain_seconds() -> float:
    return 30.0


@pytest.fixture
def operator_settings(fast_settings: Settings, drain_seconds: float) -> Settings:
    return fast_settings.model_copy(
        update={"operator_key": SecretStr(OPERATOR_KEY), "workspace_drain_seconds": drain_seconds}
    )


@pytest.fixture
async def runtime(operator_settings: Settings, clock: ShiftedClock) -> AsyncIterator[Runtime]:
    runtime = Runtime(operator_settings, clock=clock, resolver=HostsResolver())
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


@pytest.fixture
async def replica(runtime: Runtime, operator_settings: Settings) -> AsyncIterator[Runtime]:
    """Another server process on the same store and Redis, known to the first as a live replica."""
    other = Runtime(
        operator_settings.model_copy(update={"replica_id": OTHER_REPLICA}), resolver=HostsResolver()
    )
    await other.start()
    try:
        await eventually(lambda: _live(runtime), lambda live: OTHER_REPLICA in live)
        yield other
    finally:
        await other.stop()


@pytest.fixture
async def http(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    client = asgi_http(runtime)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def operator(http: httpx.AsyncClient) -> OperatorClient:
    return OperatorClient(http, OPERATOR_KEY)


def ask_flow() -> dict[str, Any]:
    return {
        "name": "Ayuda",
        "start": "ask",
        "nodes": [{"id": "ask", "type": "message", "text": "¿Te ayudamos?", "next": None}],
    }


async def test_a_deletion_waits_for_a_send_in_flight_and_leaves_nothing_of_the_workspace(
    runtime: Runtime, http: httpx.AsyncClient, operator: OperatorClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="server.workspace_gate")
    workspace_id, key = await create_workspace(operator, name="En vuelo")
    tenant = GraphQLClient(http, key)
    await tenant(ANY_MESSAGE, f=await publish(tenant, ask_flow()))
    fake = await GraphApiFake().start()
    try:
        channel = await connect_fake(runtime, workspace_id, fake)
        held = fake.hold_answers()  # Meta takes our answer to the customer and answers when told
        await _customer_writes(runtime, http, channel)
        await eventually(lambda: _is_set(held.arrived), bool)  # the turn committed; its send is out
        needles = await workspace_ids(runtime, workspace_id)

        deleting = asyncio.create_task(operator(DELETE, id=workspace_id))
        state = await eventually(lambda: _deletion(deleting, caplog, workspace_id), lambda s: s != "running")
        assert state == "waiting", "the deletion went on while a send of the workspace was in flight"
        held.release()
        deleted = (await deleting)["deleteWorkspace"]
    finally:
        await fake.stop()

    assert deleted["finished"] is True and deleted["undrainedReplicas"] == []
    assert len(fake.sent()) == 1  # the send went, and what it wrote was deleted with the rest
    assert await store_mentions(runtime, workspace_id) == {}
    assert await redis_mentions(runtime, needles) == []


async def test_a_deletion_waits_for_the_work_another_replica_has_in_flight(
    runtime: Runtime, replica: Runtime, operator: OperatorClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="server.workspace_gate")
    workspace_id, _ = await create_workspace(operator, name="Dos réplicas")
    working = await replica.workspace_gate.admit(workspace_id)  # e.g. a webhook being stored there
    assert working is not None

    deleting = asyncio.create_task(operator(DELETE, id=workspace_id))
    state = await eventually(lambda: _deletion(deleting, caplog, workspace_id), lambda s: s != "running")
    assert state == "waiting"
    # The replica heard it: it takes no new work of the workspace while its own finishes.
    await eventually(lambda: replica.workspace_gate.may_act(workspace_id), lambda may: not may)
    assert not deleting.done()
    working.release()
    deleted = (await deleting)["deleteWorkspace"]

    assert deleted["finished"] is True and deleted["undrainedReplicas"] == []
    assert await store_mentions(runtime, workspace_id) == {}
    # Late work is refused on both processes though the workspace document is gone (a missing
    # document otherwise reads as "active"): a turn of one of its contacts stores nothing.
    for process in (runtime, replica):
        await eventually(lambda p=process: p.workspace_gate.status(workspace_id), lambda s: s == "deleted")
        assert await process.workspace_gate.admit(workspace_id) is None
    assert runtime.actors is not None
    with pytest.raises(WorkspaceDisabled):
        await runtime.actors.ask(ContactKey(workspace_id, "+34600950001"), _late_message(runtime))
    assert await store_mentions(runtime, workspace_id) == {}


@pytest.mark.parametrize("drain_seconds", [3.0])
async def test_a_deletion_a_replica_does_not_acknowledge_in_time_is_finished_by_deleting_again(
    runtime: Runtime, replica: Runtime, operator: OperatorClient
) -> None:
    workspace_id, _ = await create_workspace(operator, name="Atascada")
    stuck = await replica.workspace_gate.admit(workspace_id)
    assert stuck is not None

    first = (await operator(DELETE, id=workspace_id))["deleteWorkspace"]
    assert first["finished"] is False and first["undrainedReplicas"] == [OTHER_REPLICA]
    assert first["documents"] > 0  # its data went; its document stays, marked as being deleted
    assert (await operator(STATUS, id=workspace_id))["workspace"] == {"status": "DELETING"}

    stuck.release()
    again = (await operator(DELETE, id=workspace_id))["deleteWorkspace"]
    assert again["finished"] is True and again["undrainedReplicas"] == []
    assert await store_mentions(runtime, workspace_id) == {}
    assert (await operator(STATUS, id=workspace_id))["workspace"] is None


async def _customer_writes(runtime: Runtime, http: httpx.AsyncClient, channel: dict[str, Any]) -> None:
    message = payload("text")
    message["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] = str(
        int(runtime.clock.now().timestamp())
    )
    data = json.dumps(message).encode()
    response = await http.post(
        f"/webhooks/whatsapp/{channel['_id']}",
        content=data,
        headers={"X-Hub-Signature-256": signature_for(data, "app-secret")},
    )
    assert response.status_code == 200, response.text


def _late_message(runtime: Runtime) -> InboundMessage:
    return InboundMessage("wamid.late", runtime.clock.now(), text="hola", phone="+34600950001")


async def _deletion(deleting: asyncio.Task[Any], caplog: pytest.LogCaptureFixture, workspace_id: str) -> str:
    """``done``, ``waiting`` (it logged that it waits for work in flight) or ``running``."""
    if deleting.done():
        return "done"
    for record in caplog.records:
        message = record.getMessage()
        if WAITS in message and workspace_id in message:
            return "waiting"
    return "running"


async def _is_set(event: asyncio.Event) -> bool:
    return event.is_set()


async def _live(runtime: Runtime) -> frozenset[str]:
    return runtime.actors.leases.live if runtime.actors is not None else frozenset()
