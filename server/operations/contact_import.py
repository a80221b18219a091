"""Contact import jobs: files of any size, streamed in batches, with progress.

``start`` stores the first rows and returns the job at once; ``add`` appends further rows (a
request body is bounded, so a 100k-row file arrives in several calls, the last with
``more=False``). A worker in the process that received the rows applies them chunk by chunk
(``server/store/import_jobs.py``): rows are checked like ``importContacts`` rows, every valid
row is stored (``server/operations/contact_data.py``, ``apply_rows``), every refused one is
kept with its index, field and reason, and the job's counters (created, updated, unchanged,
refused) grow after each chunk, published on ``import_topic`` for ``importProgress``. Unlike
``importContacts`` a refused row does not stop the others. Re-importing the same file creates
nothing and changes nothing. A worker that stopped (a restart) is resumed at start, and a
chunk it held is taken up again after ``STALE_CLAIM``: rows applied twice are counted as
unchanged the second time, never duplicated.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any, Protocol

from server.cancellation import cancel_all_and_wait
from server.clock import Clock
from server.errors import InvalidInput, NotFound
from server.ids import new_id
from server.operations.contact_data import (
    ContactDataServices,
    ImportOutcome,
    ImportRow,
    RowChecker,
    RowRefusal,
    apply_rows,
)
from server.pubsub import RedisPubSub
from server.store.database import Database
from server.store.import_jobs import ImportJobRepository
from server.workspace_gate import WorkspaceGate

log = logging.getLogger(__name__)

MAX_ROWS_PER_CALL = 50_000
STALE_CLAIM = timedelta(minutes=5)
MAX_FAILURES = 8


class ImportServices(ContactDataServices, Protocol):
    """Contact import jobs: their collection, the clock and timing, the workspace gate, progress news."""

    @property
    def clock(self) -> Clock: ...

    @property
    def database(self) -> Database: ...

    @property
    def pubsub(self) -> RedisPubSub: ...

    @property
    def workspace_gate(self) -> WorkspaceGate: ...


def import_topic(job_id: str) -> str:
    return f"import:{job_id}"


class ContactImports:
    def __init__(self, services: ImportServices) -> None:
        self._services = services
        self.jobs = ImportJobRepository(services.database)
        self._workers: dict[str, asyncio.Task[None]] = {}

    async def start(self, workspace_id: str, rows: Any, more: bool, by: str | None) -> dict[str, Any]:
        """A new job holding ``rows`` (``more``: further rows follow through ``add``)."""
        _check_rows(rows, allow_empty=more)
        now = self._services.clock.now()
        job = {
            "_id": new_id("imp"),
            "workspace_id": workspace_id,
            "status": "running",
            "more": True,
            "total": 0,
            "calls": 0,
            "by": by,
            "created_at": now,
            "updated_at": now,
            "finished_at": None,
        }
        await self.jobs.create(job)
        return await self._add(job, rows, more)

    async def add(self, workspace_id: str, job_id: str, rows: Any, more: bool) -> dict[str, Any]:
        """Append ``rows`` to a job still taking rows (``more`` False: these are the last)."""
        job = await self.jobs.get(workspace_id, job_id)
        if job is None:
            raise NotFound(f"no import job {job_id}", field="jobId")
        _check_rows(rows, allow_empty=True)
        return await self._add(job, rows, more)

    async def _add(self, job: dict[str, Any], rows: list[Any], more: bool) -> dict[str, Any]:
        stored = await self.jobs.add_rows(job, rows, more, self._services.clock.now())
        if stored is None:
            raise InvalidInput(
                f"import job {job['_id']} took its last rows already (more: false); start a new one",
                field="jobId",
            )
        self._kick(stored["_id"], stored["workspace_id"])
        return stored

    def _kick(self, job_id: str, workspace_id: str) -> None:
        """Start this process's worker for the job unless one runs (it picks up new chunks)."""
        running = self._workers.get(job_id)
        if running is not None and not running.done():
            return
        task = asyncio.create_task(self._work(job_id, workspace_id), name=f"import:{job_id}")
        self._workers[job_id] = task
        task.add_done_callback(
            lambda _: self._workers.pop(job_id, None) if self._workers.get(job_id) is task else None
        )

    async def _work(self, job_id: str, workspace_id: str) -> None:
        services = self._services
        checker = RowChecker(services, workspace_id)
        failures = 0
        while True:
            try:
                # Each chunk is the workspace's work in flight (a deletion waits for it); none is
                # taken while the workspace is disabled (resumed at the next start) or deleted.
                admitted = await services.workspace_gate.admit(workspace_id)
                if admitted is None:
                    log.info("contact import %s paused: its workspace may not act now", job_id)
                    return
                with admitted:
                    if not await self._next_chunk(job_id, checker):
                        return
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a passing failure (store, shard lease): the chunk is retried
                failures += 1
                if failures >= MAX_FAILURES:
                    log.exception("contact import %s stopped; it resumes at the next start", job_id)
                    return
                log.warning("contact import %s: batch failed (%s), retrying", job_id, exc)
                await self._services.timing.sleep(min(30.0, 0.5 * 2**failures))

    async def _next_chunk(self, job_id: str, checker: RowChecker) -> bool:
        """Apply the job's next chunk; False when none is left (the job completed, or waits for rows)."""
        services = self._services
        now = services.clock.now()
        chunk = await self.jobs.claim_chunk(job_id, now, now - STALE_CLAIM)
        if chunk is None:
            if await self.jobs.pending_chunks(job_id) == 0:
                finished = await self.jobs.complete(job_id, services.clock.now())
                if finished is not None:
                    await self._publish(finished)
            return False
        try:
            job = await self._apply(chunk, checker)
        except Exception:
            await self.jobs.release_chunk(chunk["_id"])  # applied again: rows are idempotent
            raise
        if job is not None:
            await self._publish(job)
        return True

    async def _apply(self, chunk: dict[str, Any], checker: RowChecker) -> dict[str, Any] | None:
        services = self._services
        first = chunk["first_index"]
        checked = [await checker.check(row, first + n) for n, row in enumerate(chunk["rows"])]
        refused = [c.view() for c in checked if isinstance(c, RowRefusal)]
        outcome = ImportOutcome()
        await apply_rows(
            services, chunk["workspace_id"], [c for c in checked if isinstance(c, ImportRow)], outcome
        )
        counts = {
            "processed": len(checked),
            "created": outcome.created,
            "updated": outcome.updated,
            "unchanged": outcome.unchanged,
            "refused": len(refused),
        }
        return await self.jobs.finish_chunk(chunk, refused, counts, services.clock.now())

    async def _publish(self, job: dict[str, Any]) -> None:
        try:
            await self._services.pubsub.publish(import_topic(job["_id"]), job)
        except Exception:  # progress is also readable with importJob(id)
            log.warning("publishing the progress of import %s failed", job["_id"], exc_info=True)

    async def resume(self) -> None:
        """Go on with jobs a stopped process left unfinished."""
        for job in await self.jobs.unfinished():
            self._kick(job["_id"], job["workspace_id"])

    async def stop(self) -> None:
        await cancel_all_and_wait(self._workers.values())
        self._workers.clear()

    async def wait(self, job_id: str) -> None:
        """Until this process's worker for the job has nothing left (tests, the CLI)."""
        task = self._workers.get(job_id)
        if task is not None:
            await asyncio.shield(task)


def _check_rows(rows: Any, allow_empty: bool) -> None:
    if not isinstance(rows, list) or (not rows and not allow_empty):
        raise InvalidInput("rows must be a list of {phone, variables, tags, optedIn}", field="rows")
    if len(rows) > MAX_ROWS_PER_CALL:
        raise InvalidInput(
            f"at most {MAX_ROWS_PER_CALL} rows per call; send the rest with addContactImportRows",
            field="rows",
        )
