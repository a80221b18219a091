"""Start-up migration to contact identities: index what contacts stored before them are known by.

Before identities every contact was keyed by its phone: ``_id`` ``workspace:phone``, the actor
address, and the only way to find it. Those documents stay as they are: their ``_id`` is already
a stable internal id (docs/identity.md), runs, timers (Redis jobs name ``workspace, phone``) and
messages (which name the ``phone``) keep pointing at them. What they lack is an entry in
``identities``, the unique index that finds a contact by its phone or BSUID. This claims one for
every identity a contact document holds, in batches of ``BATCH`` contacts (one bulk insert and
one read each), in ``_id`` order.

Safe to run on several replicas at once and again after a crash: a claim is an insert of the
identity's own ``_id`` (a second one is a duplicate, left alone). The store is marked done in
``upgrades`` at the end, so later starts skip the scan. The directory finds legacy contacts by
phone even before they are indexed, so nothing waits on this for correctness; an identity held by
two contact documents (written during a rolling deploy) is a merge, done through ``merge``.

Messages named their contact by ``phone`` only (its ``local_id`` then); ``backfill_message_contacts``
gives each its ``contact_id`` (``workspace:phone``), the key of the conversation index, in the
background after start (a store may hold millions): until it is done, a legacy contact's
conversation also reads its messages without one (``store/messages.py``, ``of_contact``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import UpdateOne

from server.identity import KINDS
from server.store.database import Database
from server.store.identities import IdentityRepository, identity_id

log = logging.getLogger(__name__)

UPGRADE = "contact_identities"
MESSAGES_UPGRADE = "message_contact_ids"
BATCH = 1000

Merge = Callable[[str, list[str]], Awaitable[str]]


@dataclass
class MigrationReport:
    skipped: bool = False  # done before (by this or another replica)
    contacts: int = 0
    claimed: int = 0
    merged: int = 0


async def index_contact_identities(
    database: Database, identities: IdentityRepository, merge: Merge, now: datetime, batch: int = BATCH
) -> MigrationReport:
    """Claim the identities of every contact (once per store); merge contacts that share one."""
    upgrades = database.collection("upgrades")
    report = MigrationReport()
    if await upgrades.find_one({"_id": UPGRADE, "done_at": {"$ne": None}}):
        report.skipped = True
        return report
    contacts = database.collection("contacts")
    projection = {"workspace_id": 1, **dict.fromkeys(KINDS, 1)}
    last: str | None = None
    while True:
        query: dict[str, Any] = {"merged_into": None}
        if last is not None:
            query["_id"] = {"$gt": last}
        page = await contacts.find(query, projection).sort("_id", 1).limit(batch).to_list()
        if not page:
            break
        last = page[-1]["_id"]
        report.contacts += len(page)
        claims = [_claim(contact, kind, now) for contact in page for kind in KINDS if _held(contact, kind)]
        await identities.claim_many(claims)
        owners = await identities.owners([claim["_id"] for claim in claims])
        for claim in claims:
            owner = owners.get(claim["_id"])
            if owner == claim["contact_id"]:
                report.claimed += 1
            elif owner is not None:  # two documents for one person: one absorbs the other
                await merge(claim["workspace_id"], sorted({owner, claim["contact_id"]}))
                report.merged += 1
    await upgrades.update_one({"_id": UPGRADE}, {"$set": {"done_at": now}}, upsert=True)
    log.info(
        "contact identities: %d contacts scanned, %d identities indexed, %d merged",
        report.contacts,
        report.claimed,
        report.merged,
    )
    return report


def _held(contact: dict[str, Any], kind: str) -> bool:
    return isinstance(contact.get(kind), str) and bool(contact[kind])


def _claim(contact: dict[str, Any], kind: str, now: datetime) -> dict[str, Any]:
    workspace_id, value = contact["workspace_id"], contact[kind]
    return {
        "_id": identity_id(workspace_id, kind, value),
        "workspace_id": workspace_id,
        "kind": kind,
        "value": value,
        "contact_id": contact["_id"],
        "at": now,
    }


async def backfill_message_contacts(database: Database, now: datetime, batch: int = BATCH) -> int:
    """Give every message written before identities its ``contact_id`` (once per store); returns
    how many were updated. Idempotent: only messages still without one are written."""
    upgrades = database.collection("upgrades")
    if await upgrades.find_one({"_id": MESSAGES_UPGRADE, "done_at": {"$ne": None}}):
        return 0
    messages = database.collection("messages")
    updated = 0
    last: str | None = None
    while True:
        query: dict[str, Any] = {"contact_id": {"$exists": False}}
        if last is not None:
            query["_id"] = {"$gt": last}
        page = (
            await messages.find(query, {"workspace_id": 1, "phone": 1}).sort("_id", 1).limit(batch).to_list()
        )
        if not page:
            break
        last = page[-1]["_id"]
        writes = [
            UpdateOne(
                {"_id": m["_id"], "contact_id": {"$exists": False}},
                {"$set": {"contact_id": f"{m['workspace_id']}:{m['phone']}"}},
            )
            for m in page
            if m.get("phone") and m.get("workspace_id")
        ]
        if writes:
            updated += (await messages.bulk_write(writes, ordered=False)).modified_count
    await upgrades.update_one({"_id": MESSAGES_UPGRADE}, {"$set": {"done_at": now}}, upsert=True)
    if updated:
        log.info("messages: %d given the contact id they were written for", updated)
    return updated
