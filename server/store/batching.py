"""Group commit: concurrent writes (and reads by id) to one collection share one round trip.

The embedded store does more documents per second inside one bulk write than as separate writes
(contact compare-and-sets: about 600/s one by one, 1,050-1,350/s in bulks of 20), so many actors
committing at once should not each pay a round trip. Callers still await their own write and
get its own outcome: a write is acknowledged only after the bulk that carried it was
acknowledged by the store (the same durability as a single write). While one bulk is in
flight the next writes queue up and go out together when it returns: under light load every
write goes out alone at once, so batching adds no latency. Under load (the last group carried
more than one write and went out within ``BUSY_SECONDS``) a group lingers ``LINGER_SECONDS``
before it goes, so the writes of the other turns in flight join it: issue 19 measured the
driver's own work at 0.3-0.7 CPU-ms per round trip whatever its size, and each P1 webhook
waiting on about ten groups one after the other; lingering cut the round trips per webhook by
a fifth. A stream of lone writes (one webhook at a time, however many per second) never waits.

Outcomes per write come from the unordered bulk's ``writeErrors`` (by index): a duplicate key
(code 11000) is the ``DUPLICATE`` outcome, which is how compare-and-set writes report a lost race
(see ``ContactRepository.compare_and_set``); any other write error is raised to that caller only;
a failure of the whole round trip (store down) is raised to every caller of the bulk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any, Generic, TypeVar

from pymongo import DeleteMany, DeleteOne, InsertOne, ReplaceOne, UpdateMany, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, WriteError

from server.document_copy import copy_document

WriteOp = InsertOne[Any] | ReplaceOne[Any] | UpdateOne | UpdateMany | DeleteOne | DeleteMany
DUPLICATE_KEY = 11000
MAX_BATCH = 500  # documents per bulk: past a few hundred the store gains nothing and latency grows
# A group whose last bulk had company and went out this recently waits ``LINGER_SECONDS`` for
# more. Both on the event loop's own clock: it paces I/O, like a socket's timeout, and is nothing
# a test waits for (a quiet group goes at once).
LINGER_SECONDS = 0.003
BUSY_SECONDS = 0.1


Item = TypeVar("Item")
Result = TypeVar("Result")


class Outcome(Enum):
    DONE = "done"
    DUPLICATE = "duplicate"  # the write hit a unique key: an insert's retry, or a lost CAS race


class GroupFlusher(Generic[Item, Result]):
    """Queues items with a future each and flushes them in groups, at most one group in flight.

    While a group is at the store the next items queue up; when it returns they go out together.
    ``_flush`` settles every future of its group; an exception it raises fails those still open.
    """

    def __init__(
        self,
        collection: AsyncCollection[dict[str, Any]],
        max_batch: int = MAX_BATCH,
        linger: float = LINGER_SECONDS,
    ) -> None:
        self._collection = collection
        self._max_batch = max_batch
        self._linger = linger
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._flushed_at = float("-inf")  # the loop's time when the last group went out
        self._had_company = False  # whether it carried more than one item

    async def _submit(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._pending.append((item, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush_all())
        return await future

    async def _flush_all(self) -> None:
        loop = asyncio.get_running_loop()
        if self._linger > 0 and self._had_company and loop.time() - self._flushed_at < BUSY_SECONDS:
            await asyncio.sleep(self._linger)  # under load: the turns in flight join this group
        while self._pending:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            self._flushed_at, self._had_company = loop.time(), len(batch) > 1
            batch = [entry for entry in batch if not entry[1].cancelled()]
            if not batch:
                continue
            try:
                await self._flush(batch)
            except Exception as exc:  # the round trip failed: nobody's write is known to be stored
                _fail_all(batch, exc)

    async def _flush(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        raise NotImplementedError


class WriteBatcher(GroupFlusher[WriteOp, Outcome]):
    """Writes to one collection, sent as unordered bulk writes, at most one bulk in flight."""

    async def write(self, operation: WriteOp) -> Outcome:
        return await self._submit(operation)

    async def _flush(self, batch: list[tuple[WriteOp, asyncio.Future[Outcome]]]) -> None:
        failed: dict[int, dict[str, Any]] = {}
        try:
            await self._collection.bulk_write([operation for operation, _ in batch], ordered=False)
        except BulkWriteError as exc:
            if exc.details.get("writeConcernErrors"):
                raise
            failed = {error["index"]: error for error in exc.details.get("writeErrors", [])}
        for index, (_, future) in enumerate(batch):
            if future.done():
                continue
            error = failed.get(index)
            if error is None:
                future.set_result(Outcome.DONE)
            elif error.get("code") == DUPLICATE_KEY:
                future.set_result(Outcome.DUPLICATE)
            else:
                future.set_exception(_write_error(error))


class CasBatcher(GroupFlusher[tuple[dict[str, Any], Mapping[str, Any]], bool]):
    """Compare-and-set replaces of many documents in one unordered bulk; each caller learns if it won.

    A bulk only says how many replaces matched in total, and an upsert (which would report a lost
    race per operation as a duplicate key) makes the embedded store scan the collection. So each
    document carries a unique ``commit_id``: when fewer replaces matched than were sent, the
    stored ``commit_id`` of each document tells whose write landed.
    """

    async def replace(self, query: dict[str, Any], document: Mapping[str, Any]) -> bool:
        """Replace the document matching ``query`` (which names its ``_id``); False if none matched."""
        return await self._submit((query, document))

    async def _flush(
        self, batch: list[tuple[tuple[dict[str, Any], Mapping[str, Any]], asyncio.Future[bool]]]
    ) -> None:
        operations: list[ReplaceOne[Any]] = [ReplaceOne(query, document) for (query, document), _ in batch]
        failed: dict[int, dict[str, Any]] = {}
        try:
            matched = (await self._collection.bulk_write(operations, ordered=False)).matched_count
        except BulkWriteError as exc:
            failed = {error["index"]: error for error in exc.details.get("writeErrors", [])}
            matched = int(exc.details.get("nMatched", 0))
        landed: set[Any] | None = None
        if matched < len(batch) - len(failed):
            ids = [document["_id"] for (_, document), _ in batch]
            stored = await self._collection.find({"_id": {"$in": ids}}, {"commit_id": 1}).to_list()
            landed = {doc.get("commit_id") for doc in stored}
        for index, ((_, document), future) in enumerate(batch):
            if future.done():
                continue
            error = failed.get(index)
            if error is not None:
                future.set_exception(_write_error(error))
            else:
                future.set_result(landed is None or document["commit_id"] in landed)


class IdLoader(GroupFlusher[Any, dict[str, Any] | None]):
    """Finds by ``_id`` batched into one ``$in`` query per round trip (same scheme as the writes)."""

    async def load(self, doc_id: Any) -> dict[str, Any] | None:
        return await self._submit(doc_id)

    async def _flush(self, batch: list[tuple[Any, asyncio.Future[dict[str, Any] | None]]]) -> None:
        ids = list({doc_id for doc_id, _ in batch})
        if len(ids) == 1:
            found = await self._collection.find_one({"_id": ids[0]})
            documents = [found] if found is not None else []
        else:
            documents = await self._collection.find({"_id": {"$in": ids}}).to_list()
        by_id = {document["_id"]: document for document in documents}
        seen: set[Any] = set()
        for doc_id, future in batch:
            if future.done():
                continue
            document = by_id.get(doc_id)
            # Two callers asking for the same id must not share (and mutate) one dict.
            shared = doc_id in seen and document is not None
            future.set_result(copy_document(document) if shared else document)
            seen.add(doc_id)


class IdDeleter(GroupFlusher[Any, None]):
    """Deletes by ``_id`` merged into one ``delete_many`` with ``$in`` per round trip.

    One filter over the group's ids costs the embedded store about two thirds of as many one-id
    deletes in a bulk (0.24-0.32 against 0.47-0.49 ms per document, issue 19)."""

    async def delete(self, doc_ids: Sequence[Any]) -> None:
        """Delete these documents (missing ones are no error); returns once the store has."""
        if doc_ids:
            await self._submit(list(doc_ids))

    async def _flush(self, batch: list[tuple[Any, asyncio.Future[None]]]) -> None:
        ids = list({doc_id for doc_ids, _ in batch for doc_id in doc_ids})
        await self._collection.delete_many({"_id": {"$in": ids}})
        for _, future in batch:
            if not future.done():
                future.set_result(None)


def _write_error(error: dict[str, Any]) -> WriteError:
    return WriteError(str(error.get("errmsg", "write failed"))[:300], error.get("code"), error)


def _fail_all(batch: Sequence[tuple[Any, asyncio.Future[Any]]], exc: Exception) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)
