"""Read-only views over a workspace's contacts for estimates (who would receive what, and where)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from server.store.contacts import live_contacts
from server.store.database import Database


class ContactPhones:
    def __init__(self, database: Database) -> None:
        self._contacts = database.collection("contacts")

    async def count_by(self, workspace_id: str, key: Callable[[str], str | None]) -> Counter[str | None]:
        """How many contacts share ``key(phone)`` (e.g. their country), streaming only the phones."""
        counts: Counter[str | None] = Counter()
        async for document in self._contacts.find(live_contacts(workspace_id), {"phone": 1, "_id": 0}):
            counts[key(str(document.get("phone") or ""))] += 1
        return counts
