"""Everything a workspace holds in the store, found without a list to keep up to date.

The rule: every document of every collection belongs to one workspace and says so in a top-level
``workspace_id`` field, except the documents of ``GLOBAL_COLLECTIONS`` (records of the deployment
itself) and of ``workspaces`` (whose ``_id`` is the workspace id). Counting and deleting a
workspace's data therefore list the database's collections when they run: a collection added
later is covered the day it exists, as long as its documents carry ``workspace_id``.
``tests/integration/test_workspace_lifecycle.py`` holds the rule against the database's actual
collections after a workspace has used every feature, and checks that deleting it leaves nothing.

Collections without an index on ``workspace_id`` (side collections keyed by ``_id`` alone, kept
lean because every index costs each write) are scanned; deleting a workspace is a rare
operator action, so that is the better trade.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.store.database import Database

WORKSPACES = "workspaces"
# Documents of the deployment, not of a workspace (store/legacy_ids.py's upgrade moments).
GLOBAL_COLLECTIONS = frozenset({"upgrades"})


async def workspace_collections(database: Database) -> list[str]:
    """The collections whose documents belong to workspaces by ``workspace_id``, as they exist now."""
    names = await database.db.list_collection_names()
    return sorted(
        name
        for name in names
        if name != WORKSPACES and name not in GLOBAL_COLLECTIONS and not name.startswith("system.")
    )


async def count_workspace_documents(database: Database, workspace_id: str) -> dict[str, int]:
    """How many documents of the workspace each collection holds (collections holding none left
    out), its own document included."""
    counts: dict[str, int] = {}
    for name in await workspace_collections(database):
        counts[name] = await database.collection(name).count_documents({"workspace_id": workspace_id})
    counts[WORKSPACES] = await database.collection(WORKSPACES).count_documents({"_id": workspace_id})
    return {name: count for name, count in counts.items() if count}


async def delete_workspace_documents(database: Database, workspace_id: str) -> dict[str, int]:
    """Delete the workspace's documents from every collection, except its own document (deleted
    last by the caller, so a deletion cut short can be run again); returns what each lost."""
    deleted: dict[str, int] = {}
    for name in await workspace_collections(database):
        result = await database.collection(name).delete_many({"workspace_id": workspace_id})
        if result.deleted_count:
            deleted[name] = result.deleted_count
    return deleted


@dataclass(frozen=True)
class WorkspaceNames:
    """The ids other systems name a workspace's data by (Redis keys: ``server/workspace_redis.py``),
    read before its documents are deleted."""

    workspace_id: str
    key_ids: frozenset[str] = frozenset()
    trigger_ids: frozenset[str] = frozenset()
    phone_number_ids: frozenset[str] = frozenset()  # only those no other workspace uses


async def workspace_names(database: Database, workspace_id: str) -> WorkspaceNames:
    owned = {"workspace_id": workspace_id}
    keys = await database.collection("api_keys").find(owned, {"key_id": 1}).to_list()
    triggers = await database.collection("webhook_triggers").find(owned, {"_id": 1}).to_list()
    channels = database.collection("channels")
    numbers = set(await channels.distinct("phone_number_id", owned))
    shared = await channels.distinct(
        "phone_number_id", {"phone_number_id": {"$in": list(numbers)}, "workspace_id": {"$ne": workspace_id}}
    )
    return WorkspaceNames(
        workspace_id=workspace_id,
        key_ids=frozenset(k.get("key_id") or k["_id"] for k in keys),
        trigger_ids=frozenset(t["_id"] for t in triggers),
        phone_number_ids=frozenset(numbers - set(shared)),
    )
