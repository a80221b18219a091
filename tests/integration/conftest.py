"""An in-process server on the real embedded store and Redis, driven over its HTTP API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from server.clock import SystemClock, SystemTiming, Timing, VirtualTiming
from server.config import Settings
from server.runtime import Runtime
from server.store.database import Database
from server.store.stats import StoreStats
from server.store.workspaces import new_api_key
from server.web.app import create_app
from tests.support.catalog import ensure_catalog
from tests.support.clock import ShiftedClock
from tests.support.graph_api_fake import GraphApiFake
from tests.support.graphql import GraphQLClient
from tests.support.network import HostsResolver

WORKSPACE = "ws_test"


async def make_workspace(runtime: Runtime, workspace_id: str = WORKSPACE, role: str = "ADMIN") -> str:
    now = SystemClock().now()
    await runtime.workspaces.ensure(workspace_id, f"Workspace {workspace_id}", "Europe/Madrid", now)
    api_key = new_api_key()
    await runtime.workspaces.add_key(workspace_id, api_key, role, "test", now)
    return api_key


@pytest.fixture
def fast_settings(settings: Settings) -> Settings:
    # Tests that walk the whole schema with one key spend far more than a client's minute of cost
    # points; the rate window has its own tests (test_api_limits.py, with a small budget).
    return settings.model_copy(
        update={
            "actor_idle_seconds": 30.0,
            "timer_poll_seconds": 0.05,
            "integrations_poll_seconds": 0.05,
            "recovery_interval_seconds": 2.0,
            "rate_limit_points": 10_000_000,
        }
    )


@pytest.fixture
def clock() -> ShiftedClock:
    """The runtime's clock: the wall clock until a test moves it forward (timers fall due at once)."""
    return ShiftedClock(SystemClock())


@pytest.fixture
def timing(request: pytest.FixtureRequest) -> Timing:
    """The runtime's timing (polls, retries, throttles): real, unless a test asks for virtual time
    with ``@pytest.mark.parametrize("timing", ["virtual"], indirect=True)`` and advances it."""
    return VirtualTiming() if getattr(request, "param", None) == "virtual" else SystemTiming()


@pytest.fixture
async def runtime(fast_settings: Settings, clock: ShiftedClock, timing: Timing) -> AsyncIterator[Runtime]:
    runtime = Runtime(fast_settings, resolver=HostsResolver(), clock=clock, timing=timing)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


@pytest.fixture
async def api_key(runtime: Runtime) -> str:
    return await make_workspace(runtime)


def client_for(runtime: Runtime, api_key: str | None) -> GraphQLClient:
    app = create_app(runtime.settings, runtime=runtime)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://konvo.test")
    return GraphQLClient(http, api_key)


@pytest.fixture
async def gql(runtime: Runtime, api_key: str) -> AsyncIterator[GraphQLClient]:
    client = client_for(runtime, api_key)
    try:
        yield client
    finally:
        await client.http.aclose()


async def publish(gql: GraphQLClient, definition: dict[str, Any]) -> str:
    """Create what the flow refers to, import it and publish it; returns the flow id."""
    await ensure_catalog(gql, definition)
    data = await gql("mutation($d: JSON!) { importFlow(definition: $d) { id } }", d=definition)
    flow_id = data["importFlow"]["id"]
    await gql("mutation($id: ID!) { publishFlow(id: $id) { status activeVersion } }", id=flow_id)
    return flow_id


@pytest.fixture
async def fake() -> AsyncIterator[GraphApiFake]:
    """The Graph API on loopback, templates approved as soon as they are submitted (a module that
    needs another fake, or Klaviyo's, defines its own ``fake``)."""
    server = await GraphApiFake(initial_template_status="APPROVED").start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def counted(settings: Settings) -> AsyncIterator[Database]:
    """A connection to the test's store that counts its commands and documents (``StoreStats``)."""
    assert settings.mongodb_uri
    database = Database(settings.mongodb_uri, settings.mongodb_db, stats=StoreStats())
    yield database
    await database.close()


def statements(database: Database, collection: str) -> dict[str, int]:
    """Write statements sent to ``collection`` so far through ``database`` (``counted``), by command."""
    assert database.stats is not None
    return {
        command: n for (into, command), n in database.stats.statements.items() if into == collection and n
    }
