"""Broadcasts, their frozen recipients, the audience query, and the messaging-limit ledger.

``broadcasts`` holds one document per broadcast with its status and the runner lease;
``broadcast_recipients`` one per (broadcast, contact) with its state (queued, started, skipped,
failed, cancelled) and, once its message met the send policy, ``delivery`` (held, retrying,
refused...); ``messaging_reach`` one per (workspace, portfolio, contact) with the last time the
contact was reached outside the 24-hour window, which is what WhatsApp's tier limit counts.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from pymongo import ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from server.store.contacts import live_contacts
from server.store.database import Database

Document = dict[str, Any]
LIGHT_CONTACT = {"runs": 0, "outbox": 0, "timers": 0, "applied_events": 0}
"""Projection for eligibility checks: everything segments and consent look at, not the run state."""
RECENT_REACH = timedelta(seconds=60)
"""A reach this process wrote this recently is not written again: the broadcast runner counts a
recipient just before starting it and the channel again as it sends, seconds later (issue 19:
two writes of one document per message). The stored time may so be up to this much earlier than
the send; against a 24-hour window that frees a slot at most a minute early."""
MAX_RECENT_REACHES = 200_000  # about a minute at Meta's fastest rate, a few tens of MB at most


def _ignore_duplicates(exc: BulkWriteError) -> None:
    if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
        raise exc


class BroadcastRepository:
    def __init__(self, database: Database) -> None:
        self._docs = database.collection("broadcasts")
        self._messages = database.collection("messages")

    async def insert(self, document: Document) -> Document:
        await self._docs.insert_one(document)
        return document

    async def get(self, workspace_id: str, broadcast_id: str) -> Document | None:
        return await self._docs.find_one({"_id": broadcast_id, "workspace_id": workspace_id})

    async def find(self, broadcast_id: str) -> Document | None:
        return await self._docs.find_one({"_id": broadcast_id})

    async def list(self, workspace_id: str) -> list[Document]:
        return await self._docs.find({"workspace_id": workspace_id}).sort("created_at", -1).to_list()

    async def transition(
        self, workspace_id: str, broadcast_id: str, from_statuses: Iterable[str], changes: Document
    ) -> Document | None:
        """Set ``changes`` only while the status is one of ``from_statuses`` (None otherwise)."""
        return await self._docs.find_one_and_update(
            {"_id": broadcast_id, "workspace_id": workspace_id, "status": {"$in": list(from_statuses)}},
            {"$set": changes},
            return_document=ReturnDocument.AFTER,
        )

    async def update(self, broadcast_id: str, changes: Document, status: str | None = None) -> bool:
        query: Document = {"_id": broadcast_id}
        if status is not None:
            query["status"] = status
        result = await self._docs.update_one(query, {"$set": changes})
        return result.matched_count == 1

    async def claimable(self, now: datetime, owner: str) -> builtins.list[Document]:
        """Running broadcasts and due scheduled ones that no other live process holds."""
        return await self._docs.find(
            {
                "$and": [
                    {"$or": [{"status": "running"}, {"status": "scheduled", "start_at": {"$lte": now}}]},
                    {"$or": [{"lease_until": None}, {"lease_until": {"$lt": now}}, {"lease_owner": owner}]},
                ]
            },
            {"_id": 1, "workspace_id": 1},
        ).to_list()

    async def claim(self, broadcast_id: str, owner: str, now: datetime, until: datetime) -> Document | None:
        """Take the lease (free, expired or already ours); the document, or None if another has it."""
        return await self._docs.find_one_and_update(
            {
                "_id": broadcast_id,
                "status": {"$in": ["running", "scheduled"]},
                "$or": [{"lease_until": None}, {"lease_until": {"$lt": now}}, {"lease_owner": owner}],
            },
            {"$set": {"lease_owner": owner, "lease_until": until}},
            return_document=ReturnDocument.AFTER,
        )

    async def renew(self, broadcast_id: str, owner: str, until: datetime) -> bool:
        result = await self._docs.update_one(
            {"_id": broadcast_id, "lease_owner": owner}, {"$set": {"lease_until": until}}
        )
        return result.matched_count == 1

    async def release(self, broadcast_id: str, owner: str) -> None:
        await self._docs.update_one(
            {"_id": broadcast_id, "lease_owner": owner}, {"$set": {"lease_owner": None, "lease_until": None}}
        )

    async def message_statuses(self, broadcast_id: str) -> builtins.list[Document]:
        """``{_id: {contact_id, phone, status}}`` per distinct triple among the broadcast's messages."""
        cursor = await self._messages.aggregate(
            [
                {"$match": {"broadcast_id": broadcast_id}},
                {"$group": {"_id": {"contact_id": "$contact_id", "phone": "$phone", "status": "$status"}}},
            ]
        )
        return await cursor.to_list()


class RecipientRepository:
    """A broadcast's frozen audience and what became of each recipient.

    The freeze writes each recipient once into ``broadcast_audience`` (keyed by ``_id`` alone, its
    ``_id`` ``{broadcast}:{local id}`` orders a broadcast's recipients), and what became of one
    (skipped, started, failed, cancelled, and the delivery notes) is inserted into
    ``broadcast_recipients`` once, with its state: a queued recipient is one of the audience
    without an outcome. Issue 19: inserting the recipient queued and updating its state when it
    started cost the embedded store 0.86-0.92 ms per message (the update rewrites the recipient and
    its state index); an audience insert and an outcome insert cost about a third of that.
    Broadcasts frozen by an older version keep their queued recipients in ``broadcast_recipients``
    (state ``queued``): every read takes both, so they run on unchanged.
    """

    def __init__(self, database: Database) -> None:
        self._docs = database.collection("broadcast_recipients")
        self._audience = database.collection("broadcast_audience")

    async def add_many(self, documents: list[Document]) -> None:
        """Freeze recipients (queued); ones already there (a freeze redone after a restart) are kept."""
        if not documents:
            return
        members = [{k: d[k] for k in AUDIENCE_FIELDS if k in d} for d in documents]
        try:
            await self._audience.insert_many(members, ordered=False)
        except BulkWriteError as exc:
            _ignore_duplicates(exc)

    async def queued(self, broadcast_id: str, after_id: str, limit: int) -> list[Document]:
        """Recipients without an outcome, in ``_id`` order after ``after_id``."""
        older = await (
            self._docs.find({"broadcast_id": broadcast_id, "state": "queued", "_id": {"$gt": after_id}})
            .sort("_id", 1)
            .limit(limit)
            .to_list()
        )
        waiting = await self._waiting(broadcast_id, after_id, limit)
        return sorted([*older, *waiting], key=lambda d: str(d["_id"]))[:limit]

    async def any_queued(self, broadcast_id: str) -> bool:
        """Whether any recipient still waits: one an older version froze, or a member of the
        audience with no outcome (each outcome is of a member)."""
        if await self._docs.find_one({"broadcast_id": broadcast_id, "state": "queued"}, {"_id": 1}):
            return True
        frozen = await self._audience.count_documents(_members_of(broadcast_id))
        return frozen > 0 and frozen > await self._docs.count_documents({"broadcast_id": broadcast_id})

    async def _waiting(
        self, broadcast_id: str, after_id: str, limit: int, up_to: str | None = None
    ) -> list[Document]:
        """Up to ``limit`` audience members after ``after_id`` (to ``up_to``) with no outcome yet,
        as queued recipients."""
        found: list[Document] = []
        after = max(after_id, f"{broadcast_id}:")
        end = up_to if up_to is not None else f"{broadcast_id};"  # ";" follows ":"
        while len(found) < limit:
            members = await (
                self._audience.find({"_id": {"$gt": after, "$lte" if up_to else "$lt": end}})
                .sort("_id", 1)
                .limit(max(limit, SCAN_BATCH))
                .to_list()
            )
            if not members:
                break
            ids = [m["_id"] for m in members]
            decided = {d["_id"] async for d in self._docs.find({"_id": {"$in": ids}}, {"_id": 1})}
            found.extend(_as_queued(m) for m in members if m["_id"] not in decided)
            after = ids[-1]
        return found[:limit]

    async def set_states(self, updates: list[tuple[Document, Document]], only_from: Iterable[str]) -> None:
        """What became of these recipients (each given as ``queued`` returned it), each applied only
        while the recipient is still in ``only_from``: a first outcome is inserted, a later one
        (a start after a cancel) or one of an older version's recipient updates it."""
        if not updates:
            return
        allowed = list(only_from)
        stored: list[int] = []
        if "queued" in allowed:
            inserts = [{**_as_queued(recipient), **changes} for recipient, changes in updates]
            try:
                await self._docs.insert_many(inserts, ordered=False)
            except BulkWriteError as exc:
                _ignore_duplicates(exc)
                failed = {error["index"] for error in exc.details.get("writeErrors", [])}
                stored = [i for i in range(len(updates)) if i not in failed]
            else:
                return
        taken = set(stored)
        rest = [
            UpdateOne({"_id": recipient["_id"], "state": {"$in": allowed}}, {"$set": changes})
            for i, (recipient, changes) in enumerate(updates)
            if i not in taken
        ]
        if rest:
            await self._docs.bulk_write(rest, ordered=False)

    async def state_counts(self, broadcast_id: str) -> list[Document]:
        cursor = await self._docs.aggregate(
            [
                {"$match": {"broadcast_id": broadcast_id}},
                {
                    "$group": {
                        "_id": {"state": "$state", "reason": "$reason", "delivery": "$delivery.state"},
                        "n": {"$sum": 1},
                    }
                },
            ]
        )
        rows: list[Document] = await cursor.to_list()
        frozen = await self._audience.count_documents(_members_of(broadcast_id))
        if frozen:  # the audience minus those with a row here (an older version's queued ones too)
            waiting = frozen - sum(row["n"] for row in rows)
            if waiting > 0:
                rows.append({"_id": {"state": "queued", "reason": None, "delivery": None}, "n": waiting})
        return rows

    async def cancel_queued(self, broadcast_id: str, now: datetime) -> int:
        result = await self._docs.update_many(
            {"broadcast_id": broadcast_id, "state": "queued"},
            {"$set": {"state": "cancelled", "at": now}},
        )
        cancelled = result.modified_count
        after = ""
        while batch := await self._waiting(broadcast_id, after, CANCEL_BATCH):
            after = batch[-1]["_id"]
            documents = [{**recipient, "state": "cancelled", "at": now} for recipient in batch]
            try:
                await self._docs.insert_many(documents, ordered=False)
                cancelled += len(documents)
            except BulkWriteError as exc:  # a start stored meanwhile wins
                _ignore_duplicates(exc)
                cancelled += len(documents) - len(exc.details.get("writeErrors", []))
        return cancelled

    async def count(self, broadcast_id: str) -> int:
        frozen = await self._audience.count_documents(_members_of(broadcast_id))
        return frozen or await self._docs.count_documents({"broadcast_id": broadcast_id})

    async def note(self, contact: Mapping[str, Any], message: Document, state: str, info: Document) -> None:
        """What became of a recipient's message past the send policy (``delivery``): HELD for quiet
        hours, RETRYING after Meta's "later", then SENT, REFUSED or FAILED with the reason. The
        note may come before the recipient's start is written (the runner writes those in bulk):
        it is then stored queued with its note, and the start updates it."""
        delivery = {"state": state, **{k: v for k, v in info.items() if v is not None}}
        recipient_id = f"{message['broadcast_id']}:{contact['phone']}"
        query = {"_id": recipient_id, "workspace_id": contact["workspace_id"]}
        result = await self._docs.update_one(query, {"$set": {"delivery": delivery}})
        if result.matched_count:
            return
        member = await self._audience.find_one(query)
        if member is None:
            return
        try:
            await self._docs.insert_one({**_as_queued(member), "delivery": delivery})
        except DuplicateKeyError:  # the start was written meanwhile
            await self._docs.update_one(query, {"$set": {"delivery": delivery}})

    async def page(
        self,
        broadcast_id: str,
        states: list[str] | None,
        delivery: list[str] | None,
        after_id: str,
        limit: int,
    ) -> list[Document]:
        """Recipients in ``_id`` order after ``after_id``, optionally of some states / delivery states."""
        query: Document = {"broadcast_id": broadcast_id, "_id": {"$gt": after_id}}
        if states:
            query["state"] = {"$in": states}
        if delivery:
            query["delivery.state"] = {"$in": delivery}
        found = await self._docs.find(query).sort("_id", 1).limit(limit).to_list()
        if delivery or (states and "queued" not in states):
            return found  # only recipients with an outcome or a note have these
        # Queued members of the audience, up to where this page of outcomes ends when it is full.
        up_to = str(found[-1]["_id"]) if len(found) == limit else None
        waiting = await self._waiting(broadcast_id, after_id, limit, up_to)
        return sorted([*found, *waiting], key=lambda d: str(d["_id"]))[:limit]


AUDIENCE_FIELDS = ("_id", "broadcast_id", "workspace_id", "contact_id", "phone")
CANCEL_BATCH = 500
SCAN_BATCH = 500  # audience members read at once looking for those without an outcome


def _members_of(broadcast_id: str) -> Document:
    return {"_id": {"$gt": f"{broadcast_id}:", "$lt": f"{broadcast_id};"}}


def _as_queued(member: Document) -> Document:
    """An audience member as the recipient document it stands for until it has an outcome."""
    return {
        **{k: member.get(k) for k in AUDIENCE_FIELDS},
        "state": "queued",
        "reason": None,
        "run_id": None,
        "at": None,
    }


class AudienceRepository:
    """Contacts seen as an audience: segment queries, batch loads for eligibility, bulk import."""

    def __init__(self, database: Database) -> None:
        self._contacts = database.collection("contacts")

    async def members(self, workspace_id: str, segment_filter: Document) -> AsyncIterator[Document]:
        query = {"$and": [live_contacts(workspace_id), segment_filter]}
        async for document in self._contacts.find(query, {"phone": 1}).sort("_id", 1):
            yield document

    async def scan(self, workspace_id: str, segment_filter: Document) -> AsyncIterator[Document]:
        query = {"$and": [live_contacts(workspace_id), segment_filter]}
        async for document in self._contacts.find(query, LIGHT_CONTACT):
            yield document

    async def load_many(self, contact_ids: list[str]) -> dict[str, Document]:
        found = await self._contacts.find({"_id": {"$in": contact_ids}}, LIGHT_CONTACT).to_list()
        return {d["_id"]: d for d in found}

    async def insert_many(self, documents: list[Document]) -> None:
        """Bulk import of new contact documents (``store.contacts.new_contact`` shape); existing kept.

        Stored at version 1 at least: version 0 means "not stored yet" to the actor's CAS.
        """
        if not documents:
            return
        stored = [{**d, "version": max(1, int(d.get("version") or 0))} for d in documents]
        try:
            await self._contacts.insert_many(stored, ordered=False)
        except BulkWriteError as exc:
            _ignore_duplicates(exc)


class MessagingLimitRepository:
    """WhatsApp messaging-limit tiers and who each business portfolio reached outside the window.

    Since 2025-10-07 the limit (250 / 2K / 10K / 100K / unlimited unique users per 24 h) belongs
    to the business portfolio, shared by all its numbers (``conformance/whatsapp-2026.md``). A
    channel names its portfolio by ``business_id``; channels without one share the workspace's
    own portfolio (``portfolio`` None), which is how every workspace counted before. Portfolios
    are scoped by workspace: a tenant names its business id, and must not spend (or learn)
    another tenant's budget by naming theirs.

    Tiers: the workspace's own on the workspace document (``messaging_limit``), a business
    portfolio's under ``portfolio_limits.<business id>``. Reach: one ``messaging_reach`` document
    per (workspace, portfolio, phone) with the last time it was reached (``_id`` kept as
    ``workspace:phone`` for the workspace's own portfolio, as before).
    """

    def __init__(self, database: Database, recent: timedelta = RECENT_REACH) -> None:
        self._workspaces = database.collection("workspaces")
        self._reach = database.collection("messaging_reach")
        self._recent_for = recent
        # reach id -> the time this process last stored for it, oldest first (``_remember``).
        self._recent: dict[str, datetime] = {}

    async def tier(self, workspace_id: str, portfolio: str | None = None) -> str | None:
        found = await self._workspaces.find_one(
            {"_id": workspace_id}, {"messaging_limit": 1, "portfolio_limits": 1}
        )
        if portfolio is None:
            return (found or {}).get("messaging_limit")
        return ((found or {}).get("portfolio_limits") or {}).get(portfolio)

    async def set_tier(self, workspace_id: str, tier: str, portfolio: str | None = None) -> None:
        name = "messaging_limit" if portfolio is None else f"portfolio_limits.{portfolio}"
        await self._workspaces.update_one({"_id": workspace_id}, {"$set": {name: tier}})

    async def used_since(self, workspace_id: str, since: datetime, portfolio: str | None = None) -> int:
        return await self._reach.count_documents(
            {"workspace_id": workspace_id, "portfolio": portfolio, "at": {"$gte": since}}
        )

    async def oldest_since(
        self, workspace_id: str, since: datetime, portfolio: str | None = None
    ) -> datetime | None:
        found = (
            await self._reach.find(
                {"workspace_id": workspace_id, "portfolio": portfolio, "at": {"$gte": since}}
            )
            .sort("at", 1)
            .limit(1)
            .to_list()
        )
        return found[0]["at"] if found else None

    async def reached_since(
        self, workspace_id: str, phones: list[str], since: datetime, portfolio: str | None = None
    ) -> set[str]:
        ids = [_reach_id(workspace_id, portfolio, p) for p in phones]
        found = await self._reach.find({"_id": {"$in": ids}, "at": {"$gte": since}}, {"phone": 1}).to_list()
        return {d["phone"] for d in found}

    async def record(
        self, workspace_id: str, phones: list[str], at: datetime, portfolio: str | None = None
    ) -> None:
        """The portfolio reached ``phones`` at ``at``; ones this process stored less than
        ``RECENT_REACH`` before ``at`` are left as they are."""
        due = {_reach_id(workspace_id, portfolio, p): p for p in phones}
        due = {reach_id: p for reach_id, p in due.items() if not self._recently_stored(reach_id, at)}
        if not due:
            return
        await self._reach.bulk_write(
            [
                UpdateOne(
                    {"_id": reach_id},
                    {"$set": {"workspace_id": workspace_id, "portfolio": portfolio, "phone": p, "at": at}},
                    upsert=True,
                )
                for reach_id, p in due.items()
            ],
            ordered=False,
        )
        self._remember(due, at)

    def _recently_stored(self, reach_id: str, at: datetime) -> bool:
        stored = self._recent.get(reach_id)
        return stored is not None and stored <= at < stored + self._recent_for

    def _remember(self, reach_ids: Iterable[str], at: datetime) -> None:
        """Note what was stored (after the write: a failed one is redone) and forget what is old."""
        for reach_id in reach_ids:
            self._recent.pop(reach_id, None)
            self._recent[reach_id] = at
        oldest = at - self._recent_for
        while self._recent:
            first = next(iter(self._recent))
            if self._recent[first] >= oldest and len(self._recent) <= MAX_RECENT_REACHES:
                break
            del self._recent[first]


def _reach_id(workspace_id: str, portfolio: str | None, phone: str) -> str:
    return f"{workspace_id}:{phone}" if portfolio is None else f"{workspace_id}:{portfolio}:{phone}"
