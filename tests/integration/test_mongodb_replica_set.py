"""MongoDB through a replica-set URI: an embedded store started as the one-node replica set
``secantus`` (the session's own runs standalone), so the server is run here with
``replicaSet=secantus`` (server discovery, not a direct connection) and the URI's concerns.
Commits (the contact compare-and-set) are sent with ``w: majority`` whatever ``w`` the URI gives;
the other collections take the URI's."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.monitoring import CommandFailedEvent, CommandListener, CommandStartedEvent, CommandSucceededEvent

from server.config import Settings
from server.dev.embedded import free_port, mongodb_uri_for, store_process
from server.operations import contacts as contact_ops
from server.operations import flows as flow_ops
from server.runtime import Runtime
from server.store.database import Database
from tests.integration.test_timer_batching import FLOW, WORKSPACE
from tests.support.contacts import key_of

WRITES = ("insert", "update", "delete", "findAndModify")


class WriteConcerns(CommandListener):
    """The write concern each write command was sent with, by collection."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any] | None]] = []

    def started(self, event: CommandStartedEvent) -> None:
        # A statement inside a transaction carries no write concern: the transaction commits as a whole.
        if event.command_name in WRITES and "autocommit" not in event.command:
            self.seen.append((event.command[event.command_name], event.command.get("writeConcern")))

    def succeeded(self, event: CommandSucceededEvent) -> None:
        pass

    def failed(self, event: CommandFailedEvent) -> None:
        pass


@pytest.fixture(scope="module")
def replica_set_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A direct URI of a replica-set store: the external test store as it is, else an embedded
    store started as the one-node replica set (the session's embedded store is standalone)."""
    external = os.environ.get("KONVO_TEST_MONGODB_URI")
    if external:
        yield external
        return
    process = store_process(tmp_path_factory.mktemp("replica-set-store"), free_port(), replica_set=True)
    process.start()
    try:
        yield mongodb_uri_for(process.port)
    finally:
        process.stop()


async def replica_set_uri(direct_uri: str, options: str) -> str:
    """The store's address as a replica-set URI, or skip when the store is no replica set."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(direct_uri, serverSelectionTimeoutMS=5000)
    try:
        name = (await client.admin.command("hello")).get("setName")
    finally:
        await client.close()
    if not name:
        pytest.skip("the store under test is not a replica set")
    host = direct_uri.split("://", 1)[1].split("/", 1)[0]
    return f"mongodb://{host}/?replicaSet={name}&retryWrites=false&{options}"


async def test_commits_wait_for_a_majority_whatever_the_uri_says(
    settings: Settings, replica_set_store: str
) -> None:
    relaxed = Database(await replica_set_uri(replica_set_store, "w=1&wtimeoutMS=4000"), settings.mongodb_db)
    default = Database(
        await replica_set_uri(replica_set_store, "readConcernLevel=majority"), settings.mongodb_db
    )
    try:
        assert relaxed.collection("contacts").write_concern.document == {"w": "majority", "wtimeout": 4000}
        assert relaxed.collection("runs").write_concern.document == {"w": 1, "wtimeout": 4000}
        assert default.collection("runs").write_concern.document == {"w": "majority"}
        assert default.collection("contacts").read_concern.level == "majority"  # the URI's, applied
        await relaxed.collection("contacts").insert_one({"_id": "probe", "n": 1})
        found = await default.collection("contacts").find_one({"_id": "probe"})
        assert found is not None and found["n"] == 1
    finally:
        await relaxed.close()
        await default.close()


async def test_a_turn_commits_with_majority_through_a_replica_set_uri(
    fast_settings: Settings, replica_set_store: str
) -> None:
    uri = await replica_set_uri(replica_set_store, "w=1&readConcernLevel=local")
    concerns = WriteConcerns()
    runtime = Runtime(fast_settings.model_copy(update={"mongodb_uri": uri}), store_listeners=[concerns])
    await runtime.start()
    try:
        await runtime.workspaces.ensure(WORKSPACE, "Timers", "Europe/Madrid", runtime.clock.now())
        flow = await flow_ops.import_flow(runtime.services, WORKSPACE, FLOW)
        await flow_ops.publish_flow(runtime.services, WORKSPACE, flow["_id"])
        phone = "+34630000001"
        await contact_ops.customer_says(runtime.services, WORKSPACE, phone, "hola", None)
        await contact_ops.start_flow(runtime.services, WORKSPACE, flow["_id"], phone, None)
        contact = await runtime.contacts.load(await key_of(runtime, WORKSPACE, phone))
        assert contact is not None and contact["runs"]
    finally:
        await runtime.stop()
    commits = [wc for collection, wc in concerns.seen if collection == "contacts"]
    others = [wc for collection, wc in concerns.seen if collection != "contacts"]
    assert commits and all(wc is not None and wc.get("w") == "majority" for wc in commits), commits
    assert others and all(wc is not None and wc.get("w") == 1 for wc in others), others[:5]
