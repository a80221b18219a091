"""Two contacts that turn out to be one person become one: the older absorbs the newer.

It happens rarely: a webhook carries a phone known as contact A and a BSUID known as contact B
(the person wrote username-only before Meta shared their number again, or a replica of an older
version created a contact during a rolling deploy). The merge, each step idempotent and recorded
in ``contact_merges`` first so recovery finishes one a crash interrupted:

1. the absorbed contact's actor ends its runs (``MERGED_INTO``) and points it at the survivor:
   from then on it hands what it receives to the survivor (``ContactActor``);
2. the survivor's actor takes in its data by the merge rule (``identity_commands.absorb``);
3. its identities and messages now name the survivor; caches forget it.

The survivor is the contact created first (ties: the smaller id), so concurrent merges of the
same contacts agree. The absorbed document stays, as the ``merged_into`` redirect.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from server.actors.events import AbsorbContact, Event, MergeInto, TurnResult
from server.clock import Clock
from server.contact_directory import ContactDirectory
from server.errors import WorkspaceDisabled
from server.ids import ContactKey
from server.store.contacts import ContactRepository
from server.store.database import Database
from server.store.identities import IdentityRepository
from server.store.messages import MessageRepository
from server.workspace_gate import WorkspaceGate

log = logging.getLogger(__name__)

Ask = Callable[[ContactKey, Event], Awaitable[TurnResult]]
MAX_CHAIN = 16
_NEVER = datetime.max.replace(tzinfo=UTC)


class MergeRepository:
    """``contact_merges``: one document per absorbed contact, ``started`` until every step is done."""

    def __init__(self, database: Database) -> None:
        self._merges = database.collection("contact_merges")

    async def start(self, workspace_id: str, absorbed: str, survivor: str, now: datetime) -> str:
        """Record the intent (once); returns the survivor recorded for ``absorbed``."""
        intent = {"workspace_id": workspace_id, "into": survivor, "state": "started", "at": now}
        try:
            await self._merges.update_one({"_id": absorbed}, {"$setOnInsert": intent}, upsert=True)
        except DuplicateKeyError:
            pass  # another replica recorded it at the same moment
        found = await self._merges.find_one({"_id": absorbed})
        return str((found or {}).get("into") or survivor)

    async def finish(self, absorbed: str, now: datetime) -> None:
        await self._merges.update_one({"_id": absorbed}, {"$set": {"state": "done", "done_at": now}})

    async def unfinished(self) -> list[dict[str, Any]]:
        return await self._merges.find({"state": "started"}).to_list()


class ContactMerger:
    def __init__(
        self,
        contacts: ContactRepository,
        identities: IdentityRepository,
        messages: MessageRepository,
        merges: MergeRepository,
        directory: ContactDirectory,
        ask: Ask,
        clock: Clock,
        gate: WorkspaceGate | None = None,
    ) -> None:
        """``gate``: a merge is its workspace's work in flight, and none runs while it may not act."""
        self._gate = gate
        self._contacts = contacts
        self._identities = identities
        self._messages = messages
        self._merges = merges
        self._directory = directory
        self._ask = ask
        self._clock = clock

    async def merge(self, workspace_id: str, contact_ids: list[str]) -> str:
        """Make the contacts one; returns the id of the one that remains."""
        live = sorted({await self._current(workspace_id, c) for c in contact_ids})
        if len(live) == 1:
            return live[0]
        found = {d["_id"]: d for d in await self._contacts.get_many(workspace_id, live)}

        def age(contact_id: str) -> tuple[datetime, str]:
            created = (found.get(contact_id) or {}).get("created_at")  # never stored yet: the newest
            return (created if isinstance(created, datetime) else _NEVER, contact_id)

        survivor = min(live, key=age)
        for absorbed in live:
            if absorbed != survivor:
                await self._absorb(workspace_id, absorbed, survivor)
        return survivor

    async def recover(self) -> int:
        """Finish merges a crash interrupted (every step is idempotent)."""
        pending = await self._merges.unfinished()
        for merge in pending:
            try:
                await self._absorb(merge["workspace_id"], merge["_id"], merge["into"])
            except WorkspaceDisabled as exc:  # finished once the workspace is enabled again
                log.info("merge of %s waits: %s", merge["_id"], exc.message)
        return len(pending)

    async def _absorb(self, workspace_id: str, absorbed: str, survivor: str) -> None:
        if self._gate is None:
            await self._absorb_admitted(workspace_id, absorbed, survivor)
            return
        async with self._gate.acting(workspace_id):  # recovery's, or nested in a webhook's or turn's
            await self._absorb_admitted(workspace_id, absorbed, survivor)

    async def _absorb_admitted(self, workspace_id: str, absorbed: str, survivor: str) -> None:
        survivor = await self._merges.start(workspace_id, absorbed, survivor, self._clock.now())
        gone = await self._ask(ContactKey.from_doc_id(absorbed), MergeInto(f"merge:{absorbed}", survivor))
        if gone.contact.get("merged_into") not in (None, survivor):
            survivor = str(gone.contact["merged_into"])  # merged elsewhere first: follow it
        snapshot = {k: v for k, v in gone.contact.items() if k not in ("runs", "outbox", "applied_events")}
        await self._ask(ContactKey.from_doc_id(survivor), AbsorbContact(f"absorb:{absorbed}", snapshot))
        await self._identities.repoint(workspace_id, absorbed, survivor)
        await self._messages.repoint(ContactKey.from_doc_id(absorbed), survivor)
        self._directory.forget_contact(absorbed)
        await self._merges.finish(absorbed, self._clock.now())
        log.info("contact %s merged into %s", absorbed, survivor)

    async def _current(self, workspace_id: str, contact_id: str) -> str:
        """Follow ``merged_into`` redirects to the contact that remains."""
        for _ in range(MAX_CHAIN):
            found = await self._contacts.get(workspace_id, contact_id)
            into = (found or {}).get("merged_into")
            if not into:
                return contact_id
            contact_id = str(into)
        return contact_id
