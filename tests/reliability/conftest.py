"""Real ``konvo serve`` processes that tests kill, restart and stop, on the session's store and Redis.

``Cluster`` keeps one environment (database, Redis, demo API key) so a process restarted after a
SIGKILL comes back as the same server; ``store`` reads the database directly to check invariants.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from server.dev.embedded import ManagedProcess, free_port, redis_process, redis_url_for, store_process
from server.secret_box import generate_key
from server.store.workspaces import new_api_key
from tests.conftest import REDIS_KINDS, ServiceURLs
from tests.e2e.conftest import ServedProcess
from tests.e2e.servers import KONVO
from tests.integration.conftest import api_key, clock, fast_settings, gql, runtime, timing  # noqa: F401 - fixtures
from tests.support.graphql import GraphQLClient
from tests.support.network import LOOPBACK_ALLOW
from tests.support.redis_cluster import LocalRedisCluster

WORKSPACE = "demo"


PORT_ATTEMPTS = 3  # a free port taken by another process before ours bound it


class Cluster:
    """``konvo serve`` processes sharing one database; each slot can be killed and restarted."""

    def __init__(self, mongodb_uri: str, redis_url: str, tmp_path: Path, **extra_env: str) -> None:
        self.db_name = f"rel_{uuid.uuid4().hex[:10]}"
        self.api_key = new_api_key()
        self.tmp_path = tmp_path
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("KONVO_")},
            "KONVO_MONGODB_URI": mongodb_uri,
            "KONVO_MONGODB_DB": self.db_name,
            "KONVO_REDIS_URL": redis_url,
            "KONVO_DEMO_API_KEY": self.api_key,
            "KONVO_LOG_LEVEL": os.environ.get("KONVO_TEST_SERVER_LOG_LEVEL", "WARNING"),
            # Processes share the store, so they share the key; the fakes they call are on loopback.
            "KONVO_SECRET_KEY": generate_key(),
            "KONVO_EGRESS_ALLOW": LOOPBACK_ALLOW,
            "KONVO_RECOVERY_INTERVAL_SECONDS": "1",
            "KONVO_TIMER_POLL_SECONDS": "0.05",
            "KONVO_RATE_LIMIT_POINTS": "100000000",
            **extra_env,
        }
        self.procs: list[ServedProcess] = []
        self.starts = 0

    def start(self, slot: int | None = None) -> ServedProcess:
        """Start a process (in ``slot`` to replace a dead one, on the same port). A new process
        whose free port was taken before it bound (another test's process, under xdist) gets
        another port: ``serve`` exits naming the port in use."""
        for attempt in range(PORT_ATTEMPTS):
            port = self.procs[slot].port if slot is not None else free_port()
            self.starts += 1
            data_dir = self.tmp_path / f"proc{self.starts}"
            env = {**self.env, "KONVO_PORT": str(port), "KONVO_DATA_DIR": str(data_dir)}
            log_path = self.tmp_path / f"proc{self.starts}.log"
            with open(log_path, "w") as log:
                process = subprocess.Popen(
                    [KONVO, "serve"], env=env, stdout=subprocess.PIPE, stderr=log, text=True
                )
            served = ServedProcess(process, data_dir, port)
            try:
                served.read_banner()
                break
            except AssertionError:
                taken = process.poll() is not None and "already in use" in log_path.read_text()
                if slot is not None or not taken or attempt == PORT_ATTEMPTS - 1:
                    raise
        if slot is None:
            self.procs.append(served)
        else:
            self.procs[slot] = served
        return served

    def kill(self, slot: int) -> None:
        self.procs[slot].process.send_signal(signal.SIGKILL)
        self.procs[slot].process.wait()

    def stop_all(self) -> None:
        for served in self.procs:
            if served.process.poll() is None:
                served.process.send_signal(signal.SIGINT)
        for served in self.procs:
            try:
                served.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                served.process.kill()
                served.process.wait()

    def url(self, slot: int) -> str:
        return self.procs[slot].base_url


@pytest.fixture
def cluster_factory(services: ServiceURLs, tmp_path: Path) -> Iterator[Any]:
    made: list[Cluster] = []

    def make(mongodb_uri: str | None = None, redis_url: str | None = None, **extra_env: str) -> Cluster:
        cluster = Cluster(
            mongodb_uri or services.mongodb_uri, redis_url or services.redis_url, tmp_path, **extra_env
        )
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.stop_all()


@pytest.fixture(params=REDIS_KINDS)
def own_redis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A Redis (or a Redis Cluster) of this test's own, to FLUSHALL without disturbing the session's."""
    if request.param == "cluster":
        cluster = LocalRedisCluster(tmp_path / "own-redis-cluster").start()
        try:
            yield cluster.url
        finally:
            cluster.stop()
        return
    process = redis_process(tmp_path / "own-redis", free_port(), persist=False)
    process.start()
    try:
        yield redis_url_for(process.port)
    finally:
        process.stop()


@pytest.fixture
def own_store(tmp_path: Path) -> Iterator[ManagedProcess]:
    """A store process of this test's own (to stop and start again), on a free port."""
    process = store_process(tmp_path / "own-store", free_port())
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def mongo(services: ServiceURLs) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    # The tests' own look at the store, taken while the servers load it fully: connected before
    # the load starts, and patient (it observes the system; it is not the system under test).
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        services.mongodb_uri, serverSelectionTimeoutMS=30_000
    )
    try:
        await client.admin.command("ping")
        yield client
    finally:
        await client.close()


class Api:
    """GraphQL over one long-lived HTTP client per base URL (re-pointed after a restart)."""

    def __init__(self, cluster: Cluster, timeout: float = 60.0) -> None:
        self.cluster = cluster
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, pool=None), limits=httpx.Limits(max_connections=100)
        )

    def gql(self, slot: int = 0) -> GraphQLClient:
        http = self.http
        base = self.cluster.url(slot)

        class _Bound(GraphQLClient):
            async def raw(self, query: str, **variables: Any) -> dict[str, Any]:
                headers = {"Authorization": f"Bearer {self.api_key}"}
                response = await http.post(
                    base + "/graphql", json={"query": query, "variables": variables}, headers=headers
                )
                assert response.status_code in (200, 400), response.text
                return response.json()

        return _Bound(http, self.cluster.api_key)

    async def aclose(self) -> None:
        await self.http.aclose()


async def publish(client: GraphQLClient, definition: dict[str, Any]) -> str:
    """Publish the flow under test; the demo's keyword and catch-all triggers are removed first, so
    a customer's message reaches only the run this test starts (none starts a flow of its own)."""
    for trigger in (await client("{ inboundTriggers { id } }"))["inboundTriggers"]:
        await client("mutation($id: ID!) { deleteInboundTrigger(id: $id) }", id=trigger["id"])
    data = await client("mutation($d: JSON!) { importFlow(definition: $d) { id } }", d=definition)
    flow_id = data["importFlow"]["id"]
    await client("mutation($id: ID!) { publishFlow(id: $id) { status activeVersion } }", id=flow_id)
    return flow_id
