"""The durable record of every status report about an outbound message (``message_statuses``).

One document per (workspace, provider id, status), so a webhook retried by Meta is stored once
and one tenant posting another's wamid stores a report of its own. Its ``state`` says how far
it got:

- ``parked``: the message is not known yet (the send response has not been recorded when the
  status arrived); applied when the provider id shows up, or by recovery;
- ``recorded``: the message document has it; its contact's actor was told and has not confirmed;
- ``applied``: the actor's turn committed it (a run step was written, or nothing needed one);
- ``expired``: parked for days without its message ever showing up (sent by another tool).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from pymongo import InsertOne

from server.ids import scoped_id
from server.store.batching import IdLoader, Outcome, WriteBatcher
from server.store.database import Database
from server.store.legacy_ids import LegacyProviderIds

Document = dict[str, Any]


def report_id(workspace_id: str, provider_id: str, status: str) -> str:
    return scoped_id(workspace_id, f"{provider_id}:{status}")


class MessageStatusRepository:
    def __init__(self, database: Database, legacy: LegacyProviderIds) -> None:
        self._statuses = database.collection("message_statuses")
        self._legacy = legacy
        # Group commit: the reports of concurrent webhooks share round trips (store/batching.py);
        # each webhook is still answered only once its own report is stored.
        self._inserts = WriteBatcher(self._statuses)
        self._loads = IdLoader(self._statuses)

    async def record_report(self, document: Document) -> tuple[bool, Document | None]:
        """Store a provider's report (``_id`` from ``report_id``): (True, None) when new, else
        (False, the report stored before).

        A report stored by an older version under ``{provider id}:{status}`` is found too, when
        it is of the same workspace (``server/store/legacy_ids.py``).
        """
        if self._legacy.may_exist(document["at"]):
            bare = await self.get(f"{document['provider_id']}:{document['status']}")
            if bare is not None and bare.get("workspace_id") == document["workspace_id"]:
                return False, bare
        if await self.insert(document):
            return True, None
        return False, await self.get(document["_id"])

    async def insert(self, document: Document) -> bool:
        """Store a report; False when the same (provider id, status) was stored before."""
        return await self._inserts.write(InsertOne(document)) is Outcome.DONE

    async def get(self, status_id: str) -> Document | None:
        return await self._loads.load(status_id)

    async def attach(self, status_id: str, message_id: str, contact: Document) -> None:
        """The report's message is known: it is on the message document and its actor is told.

        ``contact``: the message's ``contact_id`` and ``phone`` (``ContactKey.referenced_by``).
        """
        await self._statuses.update_one(
            {"_id": status_id, "state": {"$ne": "applied"}},
            {"$set": {"message_id": message_id, **contact, "state": "recorded"}},
        )

    async def mark_applied(self, status_id: str) -> None:
        await self.set_state(status_id, "applied")

    async def set_state(self, status_id: str, state: str) -> None:
        await self._statuses.update_one({"_id": status_id}, {"$set": {"state": state}})

    async def parked_for(self, workspace_id: str, provider_id: str) -> list[Document]:
        return await self._statuses.find(
            {"workspace_id": workspace_id, "provider_id": provider_id, "state": "parked"}
        ).to_list()

    async def unfinished(self, recorded_before: datetime) -> AsyncIterator[Document]:
        """Every parked report, and recorded ones whose actor turn never confirmed."""
        cursor = self._statuses.find(
            {
                "$or": [
                    {"state": "parked"},
                    {"state": "recorded", "received_at": {"$lt": recorded_before}},
                ]
            }
        )
        async for document in cursor:
            yield document
