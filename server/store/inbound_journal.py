"""Which stored inbound messages may still be unapplied: one journal entry per group of them.

A webhook is answered once its messages are stored, so something durable must say which stored
messages their actors may not have applied yet: recovery re-tells those after a crash. That was a
mark per message (``inbound_pending``: an insert at the webhook and a delete once applied, two of
the embedded store's ~8 documents per webhook, issue 19). Here the messages stored together (the
group commit of ``server/store/batching.py``: those arriving while the previous group is at the
store) share one entry ``{_id, workspace_id, ids, at}`` per workspace in ``inbound_journal``,
inserted beside their message inserts and deleted once every message in it was applied. Under
load a group holds several messages, so the store writes two documents per group, not per message.

What "applied" means is unchanged: the message's turn committed and its effects ran (the actor's
``Effects.after_commit`` and ``redo_after_commit`` settle it), or a turn told to apply it ended
well (``MessageRepository.settle_when_applied``: the turn may run in another process). Until then
the entry stays: after a crash, recovery (``recovered``) reads the entries older than its grace,
re-tells their messages, and the actor's ``applied_events`` drops those it did apply (as it did
for a mark a crash left between the commit and its delete). An entry recovery finds partly
settled by this process is narrowed to the rest first, so siblings of a message that keeps
failing are not told again pass after pass.

The entries are kept in process memory as well (``_open``); memory holds no more than the entries
in the store plus those of the last grace period: recovery forgets the ones it no longer finds.
A new collection, not ``inbound_pending``: an older version's recovery, during a rolling deploy,
would have taken a group's entry for the mark of a message that does not exist and deleted it.
Marks older versions wrote there are still recovered (``server/store/messages.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.ids import new_id
from server.store.batching import GroupFlusher, IdDeleter
from server.store.database import Database

COLLECTION = "inbound_journal"


@dataclass
class _Entry:
    """One journal entry as this process knows it: the ids not yet applied, and its time."""

    outstanding: set[str]
    at: datetime
    tracked: int  # when this process took it up (a count): recovery forgets only older ones


class InboundJournal(GroupFlusher[tuple[str, str, datetime], None]):
    """Holds inbound message ids until applied; one document per workspace of a group stored together
    (every document names its workspace: ``server/store/workspace_data.py``)."""

    def __init__(self, database: Database) -> None:
        collection = database.collection(COLLECTION)
        super().__init__(collection)
        self._entries = collection
        self._deletes = IdDeleter(collection)
        self._open: dict[str, _Entry] = {}  # entry id -> what is left of it
        self._held: dict[str, set[str]] = {}  # message id -> the entries listing it
        self._tracked = 0

    async def hold(self, message_id: str, workspace_id: str, at: datetime) -> None:
        """Record ``message_id`` (of ``workspace_id``, timestamped ``at``) as stored and not yet
        applied; durable on return."""
        await self._submit((message_id, workspace_id, at))

    async def _flush(self, batch: list[tuple[tuple[str, str, datetime], asyncio.Future[None]]]) -> None:
        entries: dict[str, dict[str, Any]] = {}
        for (message_id, workspace_id, at), _ in batch:
            entry = entries.setdefault(
                workspace_id, {"_id": new_id("inj"), "workspace_id": workspace_id, "ids": [], "at": at}
            )
            if message_id not in entry["ids"]:
                entry["ids"].append(message_id)
            entry["at"] = min(entry["at"], at)
        await self._entries.insert_many(list(entries.values()))
        for entry in entries.values():
            self._track(entry["_id"], set(entry["ids"]), entry["at"])
        for _, future in batch:
            if not future.done():
                future.set_result(None)

    def holds(self, message_id: str) -> bool:
        """Whether an entry this process knows still waits for this message."""
        return message_id in self._held

    async def listed(self, message_id: str) -> bool:
        """Whether any stored entry lists this message. A scan: entries live only until their
        messages are applied, so the collection is small, and this is asked only of a provider's
        retry (``MessageRepository.applied``)."""
        return await self._entries.find_one({"ids": message_id}, {"_id": 1}) is not None

    async def settle(self, message_ids: Iterable[str]) -> None:
        """These messages are applied: entries left with nothing outstanding are deleted."""
        done: list[str] = []
        for message_id in message_ids:
            for entry_id in self._held.pop(message_id, ()):
                entry = self._open.get(entry_id)
                if entry is None:
                    continue
                entry.outstanding.discard(message_id)
                if not entry.outstanding:
                    del self._open[entry_id]
                    done.append(entry_id)
        await self._deletes.delete(done)

    async def recovered(
        self, older_than: datetime, messages_of: Callable[[list[str]], Awaitable[dict[str, dict[str, Any]]]]
    ) -> AsyncIterator[dict[str, Any]]:
        """The stored messages of entries older than ``older_than`` still waiting, entry by entry,
        now held by this process (a turn that applies one settles it). ``messages_of(ids)`` reads
        the stored messages of these ids by id. An entry whose messages are all gone (their insert
        failed: the provider retried) is deleted; one with some gone, or partly settled here, is
        narrowed to the rest first."""
        seen: set[str] = set()
        before = self._tracked
        async for document in self._entries.find({"at": {"$lt": older_than}}):
            entry_id: str = document["_id"]
            seen.add(entry_id)
            ids = list(document.get("ids", []))
            known = self._open.get(entry_id)
            waiting = [i for i in ids if known is None or i in known.outstanding]
            found: dict[str, dict[str, Any]] = await messages_of(waiting) if waiting else {}
            left = [i for i in waiting if i in found]
            if not left:
                self._forget(entry_id)
                await self._entries.delete_one({"_id": entry_id})
                continue
            if len(left) < len(ids):
                await self._entries.update_one({"_id": entry_id}, {"$set": {"ids": left}})
            self._forget(entry_id)
            self._track(entry_id, set(left), document["at"])
            for message_id in left:
                yield found[message_id]
        for entry_id, entry in list(self._open.items()):
            gone = entry_id not in seen and entry.at < older_than  # deleted by another process
            if gone and entry.tracked <= before:
                self._forget(entry_id)

    def _track(self, entry_id: str, ids: set[str], at: datetime) -> None:
        self._tracked += 1
        self._open[entry_id] = _Entry(ids, at, self._tracked)
        for message_id in ids:
            self._held.setdefault(message_id, set()).add(entry_id)

    def _forget(self, entry_id: str) -> None:
        entry = self._open.pop(entry_id, None)
        if entry is None:
            return
        for message_id in entry.outstanding:
            entries = self._held.get(message_id)
            if entries is not None:
                entries.discard(entry_id)
                if not entries:
                    del self._held[message_id]
