"""Provider ids stored bare, before documents named by them were scoped by workspace (issue 15).

Until then an inbound message's ``_id`` was the provider's id alone (a wamid), a status report's
was ``{wamid}:{status}`` and a message reference's the wamid: one tenant could post another's
wamid to its own channel and be handed the other's message. New documents carry the workspace
in their ``_id`` (``server.ids.scoped_id``). Old ones are not rewritten: a store may hold millions
and a rewrite would hold up the start (and race the replicas of a rolling deploy). They keep
working through lookups that accept both forms:

- a message reference is read with one query for both ids, filtered by workspace;
- a provider's retry (inbound message, status report) of an event stored under the bare id
  can only concern an event the provider timestamped before this version first ran, so the bare
  id is read only for events older than that moment plus ``MARGIN`` (old replicas of a rolling
  deploy still write bare ids for a while); new traffic pays nothing. A bare document counts
  only when it belongs to the same workspace.

The moment is recorded once per store, by the first process of this version, in ``upgrades``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from server.store.database import Database

UPGRADE = "scoped_provider_ids"
MARGIN = timedelta(days=1)


class LegacyProviderIds:
    def __init__(self, database: Database) -> None:
        self._upgrades = database.collection("upgrades")
        self._until: datetime | None = None  # unknown before ``load``: bare ids are always checked

    async def load(self, now: datetime) -> None:
        """Record (once per store) when scoped ids began, and read it back."""
        await self._upgrades.update_one({"_id": UPGRADE}, {"$setOnInsert": {"at": now}}, upsert=True)
        found = await self._upgrades.find_one({"_id": UPGRADE})
        assert found is not None
        self._until = found["at"] + MARGIN

    def may_exist(self, provider_at: datetime) -> bool:
        """Whether an event the provider timestamped ``provider_at`` may be stored under its bare id."""
        return self._until is None or provider_at < self._until
