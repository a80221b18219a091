"""Conversation messages in and out; inbound ones double as the durable record of an event.

Every secondary index costs each write of the embedded store about as much as the write itself,
so ``messages`` keeps only the conversation index (by ``contact_id``). Side collections keyed by
``_id`` alone answer the other questions: ``inbound_journal`` lists, a group at a time, the inbound
messages stored but not yet applied by their actor (what recovery re-tells:
``server/store/inbound_journal.py``; older versions kept a mark per message in
``inbound_pending``, still read), and ``message_refs`` maps a provider's id (a wamid) to our
message (what a status webhook names).

A provider's id is unique only as far as the provider is honest, and any tenant can post any
wamid to its own channel: an inbound message's ``_id`` and a reference's are the provider id
scoped by workspace (``server.ids.scoped_id``), so one tenant's message is never another's.
Documents stored before that keep their bare ids and stay found (``server/store/legacy_ids.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from datetime import datetime
from typing import Any

from pymongo import InsertOne

from server.ids import ContactKey, scoped_id
from server.store.batching import IdDeleter, IdLoader, Outcome, WriteBatcher
from server.store.database import Database
from server.store.inbound_journal import InboundJournal
from server.store.legacy_ids import LegacyProviderIds

log = logging.getLogger(__name__)

# How far an outbound message got; a later one wins and ``failed`` is final.
STATUS_ORDER = ("sent", "delivered", "read", "failed")
RECOVERY_CHUNK = 500  # ids per lookup when recovery reads stored messages


class MessageRepository:
    def __init__(self, database: Database, legacy: LegacyProviderIds) -> None:
        self._legacy = legacy
        self._messages = database.collection("messages")
        self._pending = database.collection("inbound_pending")
        self._refs = database.collection("message_refs")
        # Group commit: concurrent webhooks and sends share round trips (server/store/batching.py).
        self._writes = WriteBatcher(self._messages)
        self._journal = InboundJournal(database)
        self._settling: set[asyncio.Task[None]] = set()  # ``settle_when_applied``'s marks
        self._legacy_marks: set[str] = set()  # marks older versions left, re-told by recovery here
        self._pending_deletes = IdDeleter(self._pending)  # applied: one filter for the group
        self._ref_writes = WriteBatcher(self._refs)
        self._loads = IdLoader(self._messages)
        self._pending_loads = IdLoader(self._pending)
        self._ref_loads = IdLoader(self._refs)

    async def record_inbound(self, document: dict[str, Any]) -> str | None:
        """Store an inbound message as pending: None when new, else the ``_id`` it was stored under.

        ``document`` has its ``provider_id`` and, as ``_id``, that id scoped by its workspace. A
        provider's retry finds the first copy (also one stored under the bare id by an older
        version). Both writes (the message, its journal entry) finish before the caller
        acknowledges the webhook; a retry is held again, so a crash between the two loses nothing.
        """
        if self._legacy.may_exist(document["at"]):
            bare = await self._loads.load(document["provider_id"])
            ours = bare is not None and bare.get("workspace_id") == document["workspace_id"]
            if ours and bare is not None and bare.get("direction") == "in":
                stored_id: str = bare["_id"]
                return stored_id
        _, inserted = await asyncio.gather(
            self._journal.hold(document["_id"], document["workspace_id"], document["at"]),
            self._writes.write(InsertOne({**document, "direction": "in"})),
        )
        return None if inserted is Outcome.DONE else document["_id"]

    async def get(self, message_id: str) -> dict[str, Any] | None:
        return await self._loads.load(message_id)

    async def get_many(self, workspace_id: str, message_ids: list[str]) -> list[dict[str, Any]]:
        """The messages of these ids in this workspace (missing ones left out): API DataLoaders."""
        return await self._messages.find(
            {"_id": {"$in": message_ids}, "workspace_id": workspace_id}
        ).to_list()

    async def applied(self, message_id: str) -> bool:
        """Whether the actor has applied this inbound message: no journal entry lists it any more
        (nor a mark of an older version)."""
        if self._journal.holds(message_id) or await self._journal.listed(message_id):
            return False
        return await self._pending_loads.load(message_id) is None

    async def mark_applied(self, message_ids: list[str]) -> None:
        """These inbound messages' turns committed and their effects ran (the actor's process)."""
        legacy = [message_id for message_id in message_ids if message_id in self._legacy_marks]
        self._legacy_marks.difference_update(legacy)
        await asyncio.gather(self._journal.settle(message_ids), self._pending_deletes.delete(legacy))

    def settle_when_applied(self, message_id: str, turn: Awaitable[object]) -> None:
        """Mark the message applied once ``turn``, told to apply it, ends well: the turn may run in
        another process, whose own ``mark_applied`` does not know this one's journal entries."""
        future = asyncio.ensure_future(turn)

        def done(finished: asyncio.Future[object]) -> None:
            if finished.cancelled() or finished.exception() is not None:
                return  # its entry stays: recovery tells it again
            task = asyncio.ensure_future(self.mark_applied([message_id]))
            self._settling.add(task)
            task.add_done_callback(self._settled)

        future.add_done_callback(done)

    def _settled(self, task: asyncio.Task[None]) -> None:
        self._settling.discard(task)
        if not task.cancelled() and task.exception() is not None:  # the entry stays: recovery re-tells
            log.warning("an applied inbound message stays pending: %s", task.exception())

    async def record_outbound(self, document: dict[str, Any]) -> bool:
        """Store an outbound message once (its id is the outbox id, so redelivery is a no-op)."""
        writes = [self._writes.write(InsertOne({**document, "direction": "out"}))]
        provider_id = document.get("provider_id")
        if provider_id and provider_id != document["_id"]:
            ref = {
                "_id": scoped_id(document["workspace_id"], provider_id),
                "message_id": document["_id"],
                "workspace_id": document["workspace_id"],
            }
            writes.append(self._ref_writes.write(InsertOne(ref)))
        outcomes = await asyncio.gather(*writes)
        return outcomes[0] is Outcome.DONE

    async def unapplied_inbound(self, older_than: datetime) -> AsyncIterator[dict[str, Any]]:
        """Inbound messages stored before ``older_than`` and still not applied (for recovery, which
        tells each to its actor: ``settle_when_applied``). Journal entries first, then the marks an
        older version left (a rolling deploy, or a store it wrote before it was upgraded)."""
        async for message in self._journal.recovered(older_than, self._messages_by_id):
            yield message
        cursor = self._pending.find({"at": {"$lt": older_than}}, {"_id": 1})
        ids = [document["_id"] async for document in cursor]
        for start in range(0, len(ids), RECOVERY_CHUNK):
            chunk = ids[start : start + RECOVERY_CHUNK]
            found = await self._messages_by_id(chunk)
            orphans = [message_id for message_id in chunk if message_id not in found]
            if orphans:  # the message insert failed after its mark: Meta retried or will retry
                await self._pending.delete_many({"_id": {"$in": orphans}})
            for message_id in chunk:
                if message_id in found:
                    self._legacy_marks.add(message_id)
                    yield found[message_id]

    async def _messages_by_id(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), RECOVERY_CHUNK):
            chunk = ids[start : start + RECOVERY_CHUNK]
            found.update({d["_id"]: d for d in await self._messages.find({"_id": {"$in": chunk}}).to_list()})
        return found

    async def sent_messages(self, message_ids: list[str]) -> set[str]:
        """Which of these outbox ids were sent: recorded with the provider's id (what a redelivery
        finds before sending). A contact's stored outbox may still hold them (``deliver_outbox``)."""
        found = self._messages.find(
            {"_id": {"$in": message_ids}, "direction": "out", "provider_id": {"$ne": None}}, {"_id": 1}
        )
        return {document["_id"] async for document in found}

    async def outbound_for(self, key: ContactKey, channel: str) -> list[dict[str, Any]]:
        query = {"$and": [of_contact(key), {"direction": "out", "channel": channel}]}
        return await self._messages.find(query).sort([("at", 1), ("_id", 1)]).to_list()

    # --- outbound message statuses (provider webhooks and permanent send failures) ---

    async def find_by_provider_id(self, workspace_id: str, provider_id: str) -> dict[str, Any] | None:
        """Our outbound message the provider knows as ``provider_id`` (a wamid for WhatsApp).

        The sandbox's provider id is the message id itself, so both are looked up (by ``_id``).
        A reference stored by an older version has the bare provider id as ``_id``.
        Both reads go by ``_id`` through the loaders, so concurrent status webhooks share their
        round trips; the workspace and direction are checked here.
        """
        refs = await asyncio.gather(
            self._ref_loads.load(scoped_id(workspace_id, provider_id)), self._ref_loads.load(provider_id)
        )
        ref = next((r for r in refs if r is not None and r.get("workspace_id") == workspace_id), None)
        message = await self._loads.load(ref["message_id"] if ref is not None else provider_id)
        if (
            message is None
            or message.get("workspace_id") != workspace_id
            or message.get("direction") != "out"
        ):
            return None
        return message

    async def by_provider_ids(self, workspace_id: str, provider_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The workspace's messages, in or out, that a provider knows by these ids (what a quote or a
        reaction names: a wamid, or in the sandbox our own message id), by the id asked for.

        Two queries for the whole batch: the references of outbound messages, then the messages
        (outbound by reference, inbound by scoped id, and ids that are our own).
        """
        if not provider_ids:
            return {}
        scoped = {scoped_id(workspace_id, p): p for p in provider_ids}
        refs = await self._refs.find(
            {"_id": {"$in": [*scoped, *provider_ids]}, "workspace_id": workspace_id}
        ).to_list()
        referenced = {scoped.get(ref["_id"], ref["_id"]): ref["message_id"] for ref in refs}
        candidates = {*referenced.values(), *scoped, *provider_ids}
        found = {
            d["_id"]: d
            for d in await self._messages.find(
                {"_id": {"$in": list(candidates)}, "workspace_id": workspace_id}
            ).to_list()
        }
        out: dict[str, dict[str, Any]] = {}
        for provider_id in provider_ids:
            for message_id in (
                referenced.get(provider_id),
                scoped_id(workspace_id, provider_id),
                provider_id,
            ):
                if message_id is not None and message_id in found:
                    out[provider_id] = found[message_id]
                    break
        return out

    async def apply_status(
        self,
        message_id: str,
        status: str,
        at: datetime,
        *,
        pricing: dict[str, Any] | None = None,
        conversation: dict[str, Any] | None = None,
        error_code: str | None = None,
        error: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Keep every status's time, and as ``status`` the furthest one (``STATUS_ORDER``).

        Statuses arrive out of order; a lower one never replaces a higher one, and nothing
        replaces ``failed``. Two single-document updates, each idempotent.
        """
        changes: dict[str, Any] = {f"statuses.{status}": at, **(extra or {})}
        if pricing is not None:
            changes["pricing"] = pricing
        if conversation is not None:
            changes["conversation"] = conversation
        if error_code is not None or error is not None:
            changes["error_code"] = error_code
            changes["error"] = error
        await self._messages.update_one({"_id": message_id}, {"$set": changes})
        if status in STATUS_ORDER:
            at_least = list(STATUS_ORDER[STATUS_ORDER.index(status) :])
            await self._messages.update_one(
                {"_id": message_id, "status": {"$nin": at_least}}, {"$set": {"status": status}}
            )

    async def record_send_failure(
        self, message: dict[str, Any], error_code: str | None, error: str | None, at: datetime
    ) -> None:
        """Mark an outbound message failed for good, creating its record if the channel left none."""
        defaults = {k: v for k, v in message.items() if k not in ("_id", "status", "error_code", "error")}
        await self._messages.update_one(
            {"_id": message["_id"]},
            {
                "$set": {"status": "failed", "error_code": error_code, "error": error, "statuses.failed": at},
                "$setOnInsert": {**defaults, "direction": "out"},
            },
            upsert=True,
        )

    async def conversation(
        self, key: ContactKey, limit: int, before: tuple[datetime, str] | None = None
    ) -> list[dict[str, Any]]:
        """The latest ``limit`` messages in and out with the contact (older than ``before``), oldest first."""
        query: dict[str, Any] = of_contact(key)
        if before is not None:
            at, message_id = before
            query = {"$and": [query, {"$or": [{"at": {"$lt": at}}, {"at": at, "_id": {"$lt": message_id}}]}]}
        found = await self._messages.find(query).sort([("at", -1), ("_id", -1)]).limit(limit).to_list()
        return found[::-1]

    async def repoint(self, key: ContactKey, to_contact: str) -> int:
        """A merge: the messages of ``key``'s contact now belong to contact ``to_contact``."""
        result = await self._messages.update_many(of_contact(key), {"$set": {"contact_id": to_contact}})
        return result.modified_count


def of_contact(key: ContactKey) -> dict[str, Any]:
    """The filter of a contact's messages: by ``contact_id``, and for a contact stored before
    identities also the messages then written with only its phone (its ``local_id``): the start-up
    migration gives those their ``contact_id``, and a replica of the older version may still write
    some during a rolling deploy. Both branches are ranges of the conversation index."""
    mine = {"workspace_id": key.workspace_id, "contact_id": key.doc_id}
    if not key.legacy:
        return mine
    written_before = {"workspace_id": key.workspace_id, "contact_id": None, "phone": key.local_id}
    return {"$or": [mine, written_before]}
