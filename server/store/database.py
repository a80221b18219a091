"""The MongoDB connection and the collections' indexes (created idempotently at start-up)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel, WriteConcern
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure
from pymongo.monitoring import CommandListener

from server.store.stats import StoreStats

INDEXES: dict[str, list[IndexModel]] = {
    "api_keys": [IndexModel([("workspace_id", ASCENDING)]), IndexModel([("key_id", ASCENDING)])],
    "flows": [IndexModel([("workspace_id", ASCENDING), ("name", ASCENDING)])],
    "flow_versions": [IndexModel([("flow_id", ASCENDING), ("version", ASCENDING)], unique=True)],
    # Every index costs each contact commit (the embedded store maintains indexes in Python: each
    # one roughly halved its compare-and-set rate), so contacts keep only what queries need. The
    # _id is "workspace:phone"; workspace-wide queries use the inbox index's workspace_id prefix;
    # a run is found through the ``runs`` projection. A contact is found by its phone or BSUID
    # through ``identities`` (server/contact_directory.py), not by an index here.
    "contacts": [
        # The inbox (server/operations/inbox.py): newest conversations, per agent or all.
        IndexModel([("workspace_id", ASCENDING), ("last_message_at", DESCENDING), ("_id", DESCENDING)]),
        IndexModel(
            [("workspace_id", ASCENDING), ("assigned_agent", ASCENDING), ("last_message_at", DESCENDING)]
        ),
        IndexModel([("external_sync.id", ASCENDING)], sparse=True),  # Klaviyo sync recovery
    ],
    "runs": [
        IndexModel([("workspace_id", ASCENDING), ("flow_id", ASCENDING), ("_id", ASCENDING)]),
        IndexModel([("workspace_id", ASCENDING), ("contact_id", ASCENDING), ("_id", ASCENDING)]),
    ],
    # A conversation: the contact's messages by ``contact_id``. Messages written before identities
    # named the contact by phone only; the start-up migration gives them their ``contact_id``
    # (store/identity_migration.py) and reads cover the rest (store/messages.py, ``of_contact``).
    "messages": [
        IndexModel([("workspace_id", ASCENDING), ("contact_id", ASCENDING), ("at", ASCENDING)]),
        IndexModel([("broadcast_id", ASCENDING)], sparse=True),  # broadcast progress
    ],
    # Status reports of outbound messages (server/store/statuses.py): parked until their message is known.
    "message_statuses": [
        IndexModel([("workspace_id", ASCENDING), ("provider_id", ASCENDING), ("state", ASCENDING)]),
        IndexModel([("state", ASCENDING), ("received_at", ASCENDING)]),
    ],
    # The unique, workspace-scoped identities of contacts are the ``_id`` (store/identities.py);
    # this index lists a contact's own (merges, erasure).
    "identities": [IndexModel([("workspace_id", ASCENDING), ("contact_id", ASCENDING)])],
    "contact_merges": [IndexModel([("state", ASCENDING)])],
    # The workspace catalog (server/store/catalog.py): unique on each entry's natural key.
    "tags": [IndexModel([("workspace_id", ASCENDING), ("name", ASCENDING)], unique=True)],
    "fields": [IndexModel([("workspace_id", ASCENDING), ("name", ASCENDING)], unique=True)],
    "agents": [IndexModel([("workspace_id", ASCENDING), ("email", ASCENDING)], unique=True)],
    "teams": [IndexModel([("workspace_id", ASCENDING), ("name", ASCENDING)], unique=True)],
    # A phone number id is unique within its workspace only (server/store/channels.py).
    "channels": [
        IndexModel([("workspace_id", ASCENDING)]),
        IndexModel([("workspace_id", ASCENDING), ("phone_number_id", ASCENDING)], unique=True),
    ],
    "templates": [
        IndexModel([("workspace_id", ASCENDING), ("name", ASCENDING), ("language", ASCENDING)], unique=True),
        IndexModel([("workspace_id", ASCENDING), ("meta_id", ASCENDING)], sparse=True),
    ],
    # Triggers and broadcasts (server/store/triggers.py, server/store/broadcasts.py).
    "webhook_triggers": [IndexModel([("workspace_id", ASCENDING), ("flow_id", ASCENDING)])],
    "inbound_triggers": [IndexModel([("workspace_id", ASCENDING), ("priority", DESCENDING)])],
    "hook_requests": [IndexModel([("applied", ASCENDING), ("received_at", ASCENDING)])],
    "broadcasts": [
        IndexModel([("workspace_id", ASCENDING), ("created_at", DESCENDING)]),
        IndexModel([("status", ASCENDING), ("start_at", ASCENDING)]),
    ],
    "broadcast_recipients": [
        IndexModel([("broadcast_id", ASCENDING), ("state", ASCENDING), ("_id", ASCENDING)])
    ],
    # Contact import jobs and their stored rows (server/store/import_jobs.py).
    "import_jobs": [IndexModel([("status", ASCENDING)])],
    "import_chunks": [IndexModel([("job_id", ASCENDING), ("_id", ASCENDING)])],
    # Per business portfolio (server/store/broadcasts.py); "portfolio" missing = the workspace's own.
    "messaging_reach": [
        IndexModel([("workspace_id", ASCENDING), ("portfolio", ASCENDING), ("at", ASCENDING)])
    ],
    # Flow analytics (server/store/flow_counters.py): a flow's buckets of one grain, by time;
    # flow_count_marks is read and written by _id only.
    "flow_counters": [
        IndexModel(
            [("workspace_id", ASCENDING), ("flow_id", ASCENDING), ("grain", ASCENDING), ("bucket", ASCENDING)]
        )
    ],
}


# Indexes earlier versions created that cost writes and serve no query any more: dropped at start.
RETIRED_INDEXES: dict[str, list[str]] = {
    "contacts": ["workspace_id_1_phone_1", "runs.id_1", "timers.due_at_1"],
    # Unapplied inbound messages and provider ids live in side collections (store/messages.py).
    "messages": ["direction_1_applied_1", "provider_id_1", "workspace_id_1_phone_1_at_1"],
    # Numbers were unique across workspaces, which let one tenant squat another's (issue 15).
    "channels": ["phone_number_id_1"],
    # Reach is counted per business portfolio now (issue 16).
    "messaging_reach": ["workspace_id_1_at_1"],
}


INDEX_NOT_FOUND = 27

# The URI's options apply too: the embedded store's URI turns retryable writes off (embedded.py).
CLIENT_OPTIONS: dict[str, Any] = {
    "tz_aware": True,
    "serverSelectionTimeoutMS": 5000,
    "connectTimeoutMS": 5000,
}


# Where a turn commits (the contact document, compare-and-set). Its writes wait for a majority of
# a replica set whatever the URI says: a turn's effects (messages sent, timers armed) follow its
# commit, and a commit acknowledged by the primary alone could be rolled back by a failover after
# the customer got the message. Every other collection takes the URI's ``w`` (``w=1`` for cheaper
# read models, say), and without one the same majority. Reads use the primary (the default read
# preference) at read concern "local": a stale read cannot commit, the compare-and-set refuses it.
COMMIT_COLLECTIONS = frozenset({"contacts"})
MAJORITY = WriteConcern(w="majority")


class Database:
    """Owns the async client; repositories receive collections from it.

    ``listeners`` see every command this client sends (pymongo command monitoring); ``stats``, when
    given, is one of them that counts commands and documents written (``server/store/stats.py``).
    """

    def __init__(
        self, uri: str, name: str, listeners: Sequence[CommandListener] = (), stats: StoreStats | None = None
    ) -> None:
        watching = [*listeners, *([stats] if stats is not None else [])]
        self.client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            uri, event_listeners=watching, **CLIENT_OPTIONS
        )
        uri_concern = self.client.write_concern
        self.db: AsyncDatabase[dict[str, Any]] = self.client.get_database(
            name, write_concern=uri_concern if "w" in uri_concern.document else MAJORITY
        )
        self.stats = stats

    def collection(self, name: str) -> AsyncCollection[dict[str, Any]]:
        if name in COMMIT_COLLECTIONS:
            return self.db.get_collection(name, write_concern=commit_concern(self.db.write_concern))
        return self.db[name]

    async def ensure_indexes(self) -> None:
        for name, indexes in INDEXES.items():
            await self.db[name].create_indexes(indexes)
        for name, retired in RETIRED_INDEXES.items():
            existing = {index["name"] async for index in await self.db[name].list_indexes()}
            for index_name in retired:
                if index_name in existing:
                    try:
                        await self.db[name].drop_index(index_name)
                    except OperationFailure as exc:
                        if exc.code != INDEX_NOT_FOUND:
                            raise  # else another replica starting at the same time dropped it

    async def ping(self) -> bool:
        await self.db.command("ping")
        return True

    async def close(self) -> None:
        await self.client.close()


def commit_concern(base: WriteConcern) -> WriteConcern:
    """``w: majority`` with the URI's journal and timeout settings (``wtimeoutMS``, ``journal``)."""
    options = {k: v for k, v in base.document.items() if k != "w"}
    return WriteConcern(
        w="majority", wtimeout=options.get("wtimeout"), j=options.get("j"), fsync=options.get("fsync")
    )
