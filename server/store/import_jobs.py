"""Contact import jobs (``import_jobs``) and their rows, stored in chunks (``import_chunks``).

A large file arrives in several calls (a request body is bounded); each call's rows are stored
as chunks of ``CHUNK_ROWS`` before anything is applied, so a crash loses nothing accepted and a
worker on any replica can go on. A chunk is claimed (``queued`` -> ``running``) before it is
applied, keeps the rows it refused once ``done`` and drops the rows themselves (they hold phone
numbers the contacts now hold). The job's counters add up what each chunk did.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, ReturnDocument

from server.store.database import Database

CHUNK_ROWS = 1000
COUNTERS = ("processed", "created", "updated", "unchanged", "refused")


class ImportJobRepository:
    def __init__(self, database: Database) -> None:
        self._jobs = database.collection("import_jobs")
        self._chunks = database.collection("import_chunks")

    async def create(self, job: dict[str, Any]) -> None:
        await self._jobs.insert_one({**job, **dict.fromkeys(COUNTERS, 0)})

    async def get(self, workspace_id: str, job_id: str) -> dict[str, Any] | None:
        return await self._jobs.find_one({"_id": job_id, "workspace_id": workspace_id})

    async def add_rows(
        self, job: dict[str, Any], rows: list[Any], more: bool, now: datetime
    ) -> dict[str, Any] | None:
        """Store ``rows`` after the job's rows so far; None when the job takes no more rows."""
        updated = await self._jobs.find_one_and_update(
            {"_id": job["_id"], "more": True},
            {"$inc": {"total": len(rows), "calls": 1}, "$set": {"more": more, "updated_at": now}},
            return_document=ReturnDocument.BEFORE,
        )
        if updated is None:
            return None
        first = updated["total"]
        call = updated.get("calls", 0)
        chunks = [
            {
                "_id": f"{job['_id']}:{call:05d}:{n:05d}",
                "job_id": job["_id"],
                "workspace_id": job["workspace_id"],
                "first_index": first + start,
                "rows": rows[start : start + CHUNK_ROWS],
                "state": "queued",
            }
            for n, start in enumerate(range(0, len(rows), CHUNK_ROWS))
        ]
        if chunks:
            await self._chunks.insert_many(chunks)
        return await self._jobs.find_one({"_id": job["_id"]})

    async def claim_chunk(self, job_id: str, now: datetime, stale_before: datetime) -> dict[str, Any] | None:
        """The next chunk to apply (queued, or claimed by a worker that stopped before finishing)."""
        return await self._chunks.find_one_and_update(
            {
                "job_id": job_id,
                "$or": [{"state": "queued"}, {"state": "running", "claimed_at": {"$lt": stale_before}}],
            },
            {"$set": {"state": "running", "claimed_at": now}},
            sort=[("_id", ASCENDING)],
            return_document=ReturnDocument.AFTER,
        )

    async def finish_chunk(
        self, chunk: dict[str, Any], refused: list[dict[str, Any]], counts: dict[str, int], now: datetime
    ) -> dict[str, Any] | None:
        """Record a chunk's outcome once (a chunk finished twice counts once); the job after it."""
        done = await self._chunks.update_one(
            {"_id": chunk["_id"], "state": "running"},
            {"$set": {"state": "done", "refused": refused, "rows": []}},
        )
        if done.modified_count != 1:
            return None
        return await self._jobs.find_one_and_update(
            {"_id": chunk["job_id"]},
            {"$inc": {name: counts.get(name, 0) for name in COUNTERS}, "$set": {"updated_at": now}},
            return_document=ReturnDocument.AFTER,
        )

    async def release_chunk(self, chunk_id: str) -> None:
        """A chunk whose batch failed goes back to the queue (its rows apply again, harmlessly)."""
        await self._chunks.update_one({"_id": chunk_id, "state": "running"}, {"$set": {"state": "queued"}})

    async def pending_chunks(self, job_id: str) -> int:
        return await self._chunks.count_documents({"job_id": job_id, "state": {"$ne": "done"}})

    async def complete(self, job_id: str, now: datetime) -> dict[str, Any] | None:
        """Mark the job completed once every row arrived and every chunk is done; None if not yet."""
        return await self._jobs.find_one_and_update(
            {"_id": job_id, "more": False, "status": {"$ne": "completed"}},
            {"$set": {"status": "completed", "finished_at": now, "updated_at": now}},
            return_document=ReturnDocument.AFTER,
        )

    async def set_status(self, job_id: str, status: str) -> None:
        await self._jobs.update_one(
            {"_id": job_id, "status": {"$ne": "completed"}}, {"$set": {"status": status}}
        )

    async def refusals(self, job_id: str, skip: int, limit: int) -> list[dict[str, Any]]:
        """Refused rows in row order (``skip`` of them passed over)."""
        found: list[dict[str, Any]] = []
        cursor = self._chunks.find({"job_id": job_id, "refused.0": {"$exists": True}}, {"refused": 1}).sort(
            "_id", ASCENDING
        )
        async for chunk in cursor:
            for refusal in chunk["refused"]:
                if skip > 0:
                    skip -= 1
                    continue
                found.append(refusal)
                if len(found) >= limit:
                    return found
        return found

    async def unfinished(self) -> list[dict[str, Any]]:
        """Jobs still taking rows or applying them: a worker resumes them at start."""
        return await self._jobs.find({"status": "running"}).to_list()
