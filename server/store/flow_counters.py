"""Pre-aggregated flow analytics: counters by (workspace, flow, version, time bucket, node, counter).

``flow_counters`` holds one document per flow version and time bucket, at three grains: ``hour``
(the hour a turn committed in), ``day`` and ``all`` (no bucket). A document keeps ``runs``
(counters of the runs themselves) and ``nodes`` (per node id), under escaped field names, so a
turn's counters are one ``$inc`` upsert per grain, and a read of any range touches at most 46
hour documents plus one per whole day in it, whatever the number of runs: a dashboard can poll.

Exactly once. Counters come in *entries* (``server/machines/flow_counts.py``), one per committed
turn, keyed by the contact and its committed version. ``flow_count_marks`` keeps, per contact,
the last version counted; an entry at or below the mark was counted already (a recovery pass
or a retry after a lost reply) and is skipped. The marks and the increments are written in one
transaction, so a crash counts an entry entirely or not at all. A contact's entries are applied
in version order (its actor sends them in order, the older first), which is what makes one mark
per contact enough. A mark's ``_id`` is the contact's document id (workspace and phone): erasing
a contact or a workspace deletes its marks too (both carry ``workspace_id``).

Writes from many actors share a transaction (group commit, at most one in flight per process,
like ``server/store/batching.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

from pymongo import InsertOne, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import BulkWriteError, OperationFailure

from server.store.batching import DUPLICATE_KEY, GroupFlusher
from server.store.database import Database

ATTEMPTS = 5  # tries of one transaction that lost a write conflict
ILLEGAL_OPERATION = 20  # "Transaction numbers are only allowed on a replica set member or mongos"
UNSAFE = "flow counters are written without one; a crash between two writes may lose a batch's counts"
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)  # before any counter: "from the beginning"

_ESCAPES = {"%": "%25", ".": "%2E", "$": "%24", "/": "%2F"}
_EMPTY = "%00"

log = logging.getLogger(__name__)

FlowRef = tuple[str, str]  # (workspace id, flow id)
# (contact document id, workspace id, the contact's pending entries in version order)
Pending = tuple[str, str, list[dict[str, Any]]]


def _escape(part: str) -> str:
    """A field-name-safe form of a node id or counter part (no ``.``, ``$``, ``/``; never empty)."""
    return "".join(_ESCAPES.get(char, char) for char in part) or _EMPTY


def _unescape(part: str) -> str:
    return "" if part == _EMPTY else unquote(part)


@lru_cache(maxsize=65_536)
def counter_path(node: str | None, name: tuple[str, ...]) -> str:
    """The field of a counter (cached: every commit counts the same few nodes of its flows, and
    escaping them character by character was most of the counting's CPU in a profile of P1)."""
    encoded = "/".join(_escape(part) for part in name)
    return f"runs.{encoded}" if node is None else f"nodes.{_escape(node)}.{encoded}"


@lru_cache(maxsize=65_536)
def _name_of(encoded: str) -> tuple[str, ...]:
    """A stored counter name as its parts (cached: every read decodes the same few names)."""
    return tuple(_unescape(part) for part in encoded.split("/"))


def floor_hour(moment: datetime) -> datetime:
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(moment: datetime) -> datetime:
    floor = floor_hour(moment)
    return floor if floor == moment else floor + HOUR


def _floor_day(moment: datetime) -> datetime:
    return moment.replace(hour=0)


def _ceil_day(moment: datetime) -> datetime:
    floor = _floor_day(moment)
    return floor if floor == moment else floor + DAY


@dataclass
class CounterTotals:
    """Counters summed over the documents read: ``runs`` and ``nodes`` keyed by name parts."""

    runs: Counter[tuple[str, ...]] = field(default_factory=Counter)
    nodes: dict[str, Counter[tuple[str, ...]]] = field(default_factory=lambda: defaultdict(Counter))
    versions: set[int] = field(default_factory=set)

    def add(self, document: dict[str, Any]) -> None:
        self.versions.add(int(document["version"]))
        for encoded, n in (document.get("runs") or {}).items():
            self.runs[_name_of(encoded)] += int(n)
        for node, counters in (document.get("nodes") or {}).items():
            into = self.nodes[_name_of(node)[0]]
            for encoded, n in counters.items():
                into[_name_of(encoded)] += int(n)


class FlowCounterRepository(GroupFlusher[Pending, None]):
    def __init__(self, database: Database) -> None:
        self._database = database
        self._counters = database.collection("flow_counters")
        self._marks = database.collection("flow_count_marks")
        self._transactions = True  # until the store says it has none
        super().__init__(self._counters)

    async def add(self, contact_id: str, workspace_id: str, entries: list[dict[str, Any]]) -> None:
        """Count a contact's pending entries, each once; returns when they are stored."""
        if entries:
            await self._submit((contact_id, workspace_id, sorted(entries, key=lambda e: e["v"])))

    async def apply(self, pending: list[Pending]) -> None:
        """Count entries of many contacts in one transaction (recovery); already counted ones skipped."""
        if pending:
            await self._transact(pending)

    async def _flush(self, batch: list[tuple[Pending, asyncio.Future[None]]]) -> None:
        await self._transact([item for item, _ in batch])
        for _, future in batch:
            if not future.done():
                future.set_result(None)

    async def _transact(self, pending: list[Pending]) -> None:
        """Marks and increments in one transaction; a write conflict (another process counting the
        same contact) is tried again, up to ``ATTEMPTS`` times, then raised: the caller keeps the
        entries for later. A store that cannot do transactions (a standalone ``mongod``, not a
        replica set) gets the marks first and the increments after, once warned about it: a crash
        between the two then loses that batch's counts instead of counting them twice."""
        for attempt in range(1, ATTEMPTS + 1):
            if not self._transactions:
                await self._write(None, pending)
                return
            try:
                async with self._database.client.start_session() as session:
                    async with await session.start_transaction():
                        await self._write(session, pending)
                return
            except OperationFailure as exc:
                if exc.code == ILLEGAL_OPERATION and "replica set" in str(exc):
                    log.warning("the store has no transactions (not a replica set): %s", UNSAFE)
                    self._transactions = False
                elif not (exc.has_error_label("TransientTransactionError") or _lost_mark_race(exc)):
                    raise
                elif attempt == ATTEMPTS:
                    raise

    async def _write(self, session: AsyncClientSession | None, pending: list[Pending]) -> None:
        """One attempt of the transaction: read the marks, then write marks and increments."""
        ids = list({contact_id for contact_id, _, _ in pending})
        found = await self._marks.find({"_id": {"$in": ids}}, session=session).to_list()
        marks = {document["_id"]: int(document["v"]) for document in found}
        counted = dict(marks)
        increments: dict[str, Counter[str]] = defaultdict(Counter)
        inserts: dict[str, dict[str, Any]] = {}
        for contact_id, workspace_id, entries in pending:
            for entry in entries:
                if entry["v"] <= counted.get(contact_id, 0):
                    continue
                counted[contact_id] = entry["v"]
                self._count(workspace_id, entry, increments, inserts)
        workspaces = {contact_id: workspace_id for contact_id, workspace_id, _ in pending}
        mark_writes = [
            _mark_write(contact_id, workspaces[contact_id], version, contact_id in marks, session is not None)
            for contact_id, version in counted.items()
            if version > marks.get(contact_id, 0)
        ]
        if not mark_writes:
            return
        await self._marks.bulk_write(mark_writes, ordered=False, session=session)
        counter_writes = [
            UpdateOne({"_id": doc_id}, {"$inc": dict(paths), "$setOnInsert": inserts[doc_id]}, upsert=True)
            for doc_id, paths in increments.items()
        ]
        if counter_writes:
            await self._counters.bulk_write(counter_writes, ordered=False, session=session)

    @staticmethod
    def _count(
        workspace_id: str,
        entry: dict[str, Any],
        increments: dict[str, Counter[str]],
        inserts: dict[str, dict[str, Any]],
    ) -> None:
        at = entry["at"] if entry["at"].tzinfo else entry["at"].replace(tzinfo=UTC)
        hour = floor_hour(at)
        grains: list[tuple[str, datetime | None]] = [("hour", hour), ("day", _floor_day(hour)), ("all", None)]
        for flow_id, version, node, name, n in entry["c"]:
            path = counter_path(node, tuple(name))
            for grain, bucket in grains:
                stamp = bucket.isoformat() if bucket else "all"
                doc_id = f"{workspace_id}|{flow_id}|{version}|{grain}|{stamp}"
                increments[doc_id][path] += int(n)
                inserts.setdefault(
                    doc_id,
                    {
                        "workspace_id": workspace_id,
                        "flow_id": flow_id,
                        "version": int(version),
                        "grain": grain,
                        "bucket": bucket,
                    },
                )

    async def totals(
        self,
        workspace_id: str,
        flow_id: str,
        version: int | None,
        since: datetime | None,
        until: datetime | None,
        now: datetime,
    ) -> CounterTotals:
        """Counters of ``[since, until)`` rounded out to whole hours (both None: everything)."""
        base: dict[str, Any] = {"workspace_id": workspace_id, "flow_id": flow_id}
        if version is not None:
            base["version"] = version
        totals = CounterTotals()
        for grain, start, end in bucket_ranges(since, until, now):
            query = {**base, "grain": grain}
            if grain != "all":
                query["bucket"] = {"$gte": start, "$lt": end}
            async for document in self._counters.find(query, {"workspace_id": 0, "flow_id": 0}):
                totals.add(document)
        return totals


def _lost_mark_race(error: OperationFailure) -> bool:
    """A first mark inserted by another process after this transaction read none (its transaction
    is aborted, nothing of it stored): tried again, the read finds that mark."""
    if not isinstance(error, BulkWriteError):
        return False
    write_errors: list[dict[str, Any]] = (error.details or {}).get("writeErrors") or []
    return bool(write_errors) and all(e.get("code") == DUPLICATE_KEY for e in write_errors)


def _mark_write(
    contact_id: str, workspace_id: str, version: int, stored: bool, in_transaction: bool
) -> InsertOne[dict[str, Any]] | UpdateOne:
    """The write raising a contact's mark to ``version``.

    A contact's first mark, read as absent inside the transaction, is inserted: on the embedded
    store an insert costs 0.09-0.18 ms against 0.48-0.53 for the ``$max`` upsert (issue 19), and
    a first turn of a contact (every recipient of a broadcast, most webhooks) writes one. Another
    process inserting that mark meanwhile conflicts with this transaction, which is tried again
    from the read. A later mark stays a ``$max`` upsert (a whole replace measured no cheaper), and
    so does every mark without a transaction: there a duplicate key would fail the whole bulk
    after some marks landed."""
    if in_transaction and not stored:
        return InsertOne({"_id": contact_id, "v": version, "workspace_id": workspace_id})
    return UpdateOne(
        {"_id": contact_id},
        {"$max": {"v": version}, "$setOnInsert": {"workspace_id": workspace_id}},
        upsert=True,
    )


def bucket_ranges(
    since: datetime | None, until: datetime | None, now: datetime
) -> list[tuple[str, datetime | None, datetime | None]]:
    """The documents covering ``[since, until)``: whole days from day documents, the hours at
    either end from hour documents; the ``all`` document when neither end is given."""
    if since is None and until is None:
        return [("all", None, None)]
    start = floor_hour(since) if since is not None else EARLIEST
    end = ceil_hour(until) if until is not None else floor_hour(now) + HOUR
    if end <= start:
        return []
    first_day, last_day = _ceil_day(start), _floor_day(end)
    if first_day >= last_day:
        return [("hour", start, end)]
    ranges: list[tuple[str, datetime | None, datetime | None]] = [("day", first_day, last_day)]
    if start < first_day:
        ranges.append(("hour", start, first_day))
    if last_day < end:
        ranges.append(("hour", last_day, end))
    return ranges
