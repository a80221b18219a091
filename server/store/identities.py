"""The ``identities`` collection: which contact of a workspace each phone number and BSUID names.

One document per identity, ``_id`` = ``workspace:kind:value`` (kinds in ``server.identity``): the
primary key is the unique, workspace-scoped index, so two replicas claiming one identity for two
new contacts at once cannot both win. A claim is an insert (batched with concurrent ones); the
loser reads the winner's document. Only ``server.contact_directory`` and the merge use this.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import InsertOne
from pymongo.errors import BulkWriteError

from server.errors import Unavailable
from server.store.batching import DUPLICATE_KEY, IdLoader, Outcome, WriteBatcher
from server.store.database import Database

MAX_CLAIM_ATTEMPTS = 5


def identity_id(workspace_id: str, kind: str, value: str) -> str:
    return f"{workspace_id}:{kind}:{value}"


class IdentityRepository:
    def __init__(self, database: Database) -> None:
        self._identities = database.collection("identities")
        self._writes = WriteBatcher(self._identities)
        self._loads = IdLoader(self._identities)

    async def owner(self, workspace_id: str, kind: str, value: str) -> str | None:
        """The contact id (``workspace:local``) holding this identity, or None."""
        found = await self._loads.load(identity_id(workspace_id, kind, value))
        return found["contact_id"] if found is not None else None

    async def claim(self, workspace_id: str, kind: str, value: str, contact_id: str, at: datetime) -> str:
        """Give the identity to ``contact_id`` unless a contact holds it; returns the holder."""
        doc_id = identity_id(workspace_id, kind, value)
        document = {
            "_id": doc_id,
            "workspace_id": workspace_id,
            "kind": kind,
            "value": value,
            "contact_id": contact_id,
            "at": at,
        }
        for _ in range(MAX_CLAIM_ATTEMPTS):
            if await self._writes.write(InsertOne(dict(document))) is Outcome.DONE:
                return contact_id
            found = await self._loads.load(doc_id)
            if found is not None:
                return str(found["contact_id"])
            # released between our insert and our read (a number moving away): claim again
        raise Unavailable(f"identity {doc_id} keeps changing hands; try again")

    async def release(self, workspace_id: str, kind: str, value: str, contact_id: str) -> bool:
        """Drop the identity if ``contact_id`` still holds it (a number or BSUID that moved away)."""
        result = await self._identities.delete_one(
            {"_id": identity_id(workspace_id, kind, value), "contact_id": contact_id}
        )
        return result.deleted_count == 1

    async def of_contact(self, workspace_id: str, contact_id: str) -> list[dict[str, Any]]:
        """Every identity a contact holds (old numbers and BSUIDs it was known by included)."""
        query = {"workspace_id": workspace_id, "contact_id": contact_id}
        return await self._identities.find(query).to_list()

    async def repoint(self, workspace_id: str, from_contact: str, to_contact: str) -> int:
        """A merge: every identity of ``from_contact`` now names ``to_contact``."""
        result = await self._identities.update_many(
            {"workspace_id": workspace_id, "contact_id": from_contact}, {"$set": {"contact_id": to_contact}}
        )
        return result.modified_count

    async def claim_many(self, documents: list[dict[str, Any]]) -> None:
        """Insert identity documents in one bulk; ones already claimed stay as they are (migration)."""
        if not documents:
            return
        try:
            await self._identities.insert_many(documents, ordered=False)
        except BulkWriteError as exc:
            if any(error.get("code") != DUPLICATE_KEY for error in exc.details.get("writeErrors", [])):
                raise

    async def owners(self, ids: list[str]) -> dict[str, str]:
        """``identity _id -> contact id`` for those stored among ``ids``."""
        found = await self._identities.find({"_id": {"$in": ids}}, {"contact_id": 1}).to_list()
        return {d["_id"]: d["contact_id"] for d in found}
