"""Durable delivery of external field updates to Klaviyo, off the flow's path.

A linked field set by a flow or the API queues an entry in the contact document's
``external_sync`` list in the same CAS write as the value (see ``contact_state``). After the
commit an arq job (id ``xsync:<entry>:<attempt>``, so duplicates collapse) sends it; the result
goes back through the contact's actor as ``ExternalSyncResult``, which drops the entry or
records the failure on the run's steps and when to try again. Recovery re-enqueues every entry
still pending, so a crash or a Redis loss delays an update but never loses it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import nullcontext
from datetime import datetime, timedelta
from typing import Any, Protocol

from arq.connections import ArqRedis
from arq.worker import Worker, func

from server.actors.events import Event, ExternalSyncResult, TurnResult
from server.clock import Clock
from server.documents import ContactDoc
from server.ids import ContactKey
from server.integrations.klaviyo import DEFAULT_BASE_URL, KlaviyoClient, KlaviyoError, KlaviyoSettings
from server.redis_keys import arq_job_id
from server.store.contacts import ContactRepository
from server.store.workspace_settings import WorkspaceSettingsRepository
from server.workspace_gate import WorkspaceGate

log = logging.getLogger(__name__)

SYNC_JOB = "sync_external"
# Seconds before the 1st, 2nd... retry after a failed attempt; the last one repeats.
RETRY_DELAYS: tuple[float, ...] = (30, 120, 600, 1800, 3600)
MAX_ATTEMPTS = 12


def job_id(entry: dict[str, Any]) -> str:
    """Tagged, so the job's keys share the slot of arq's queues (server/redis_keys.py)."""
    return arq_job_id(f"xsync:{entry['id']}:{int(entry.get('attempts') or 0)}")


class Asking(Protocol):
    """The actor system as the sync reaches it (``services.ActorsHandle``, an ``ActorSystem``)."""

    async def ask(self, key: ContactKey, event: Event) -> TurnResult: ...


class KlaviyoSync:
    def __init__(
        self,
        contacts: ContactRepository,
        settings: WorkspaceSettingsRepository,
        pool: ArqRedis,
        queue_name: str,
        actors: Callable[[], Asking],
        clock: Clock,
        client: KlaviyoClient,
        gate: WorkspaceGate | None = None,
    ) -> None:
        """``gate``: refuses a workspace an operator disabled (its syncs then wait) or deletes, and
        counts an attempt as the workspace's work in flight (a deletion waits for it)."""
        self._gate = gate
        self._contacts = contacts
        self._settings = settings
        self._pool = pool
        self.queue_name = queue_name
        self._actors = actors
        self._clock = clock
        self.client = client
        self.retry_delays = RETRY_DELAYS
        self.max_attempts = MAX_ATTEMPTS

    async def after_turn(self, before: ContactDoc | None, after: ContactDoc) -> None:
        """Enqueue entries this turn added (only an enqueue: the flow never waits for Klaviyo)."""
        known = {e["id"] for e in (before.get("external_sync", []) if before is not None else [])}
        key = ContactKey.of_contact(after)
        for entry in after.get("external_sync", []):
            if entry["id"] not in known:
                await self.enqueue(key, entry)

    async def enqueue(self, key: ContactKey, entry: dict[str, Any]) -> None:
        if entry.get("gave_up") or entry.get("provider") != "klaviyo":
            return
        await self._pool.enqueue_job(
            SYNC_JOB,
            key.workspace_id,
            key.local_id,  # a phone for contacts stored before identities: jobs of either kind read alike
            entry["id"],
            _job_id=job_id(entry),
            _defer_until=entry.get("next_attempt_at"),
            _queue_name=self.queue_name,
        )

    async def recover(self) -> int:
        """Re-enqueue every pending entry (arq ignores job ids already queued)."""
        count = 0
        async for document in self._contacts.with_external_sync():
            key = ContactKey.of_contact(document)
            if self._gate is not None and self._gate.refuses_now(key.workspace_id):
                continue  # being deleted
            with self._gate.carry(key.workspace_id) if self._gate is not None else nullcontext():
                for entry in document.get("external_sync", []):
                    if not entry.get("gave_up"):
                        await self.enqueue(key, entry)
                        count += 1
        return count

    async def run(self, workspace_id: str, local_id: str, sync_id: str) -> str:
        """One attempt at one entry: send it, then report the outcome to the contact's actor."""
        if self._gate is None:
            return await self._attempt(workspace_id, local_id, sync_id)
        admitted = await self._gate.admit(workspace_id)
        if admitted is None:
            return "held"  # the entry stays pending: recovery enqueues it again once enabled
        with admitted:
            return await self._attempt(workspace_id, local_id, sync_id)

    async def _attempt(self, workspace_id: str, local_id: str, sync_id: str) -> str:
        key = ContactKey(workspace_id, local_id)
        contact = await self._contacts.load(key)
        entries = contact.get("external_sync", []) if contact is not None else []
        entry = next((e for e in entries if e["id"] == sync_id), None)
        if entry is None or entry.get("gave_up"):
            return "gone"  # done already, or replaced by a newer value
        attempt = int(entry.get("attempts") or 0) + 1
        try:
            phone = contact.get("phone") if contact is not None else None
            if not phone:  # a username-only customer: Klaviyo profiles are found by phone number
                raise KlaviyoError(
                    "the contact has no phone number to find its Klaviyo profile by", retryable=False
                )
            settings = await self._klaviyo_settings(workspace_id)
            await self.client.import_profile(settings, phone, {entry["property"]: entry["value"]})
        except KlaviyoError as exc:
            retry_at = self._retry_at(attempt, exc)
            await self._report(key, entry, attempt, ok=False, error=exc.message, retry_at=retry_at)
            if retry_at is not None:
                await self.enqueue(key, {**entry, "attempts": attempt, "next_attempt_at": retry_at})
            log.info("klaviyo sync %s attempt %d failed: %s", sync_id, attempt, exc.message)
            return "failed"
        await self._report(key, entry, attempt, ok=True)
        return "synced"

    def _retry_at(self, attempt: int, error: KlaviyoError) -> datetime | None:
        if not error.retryable or attempt >= self.max_attempts:
            return None
        delay = self.retry_delays[min(attempt - 1, len(self.retry_delays) - 1)]
        if error.retry_after is not None:
            delay = max(delay, error.retry_after)
        return self._clock.now() + timedelta(seconds=delay)

    async def _klaviyo_settings(self, workspace_id: str) -> KlaviyoSettings:
        stored = (await self._settings.get(workspace_id)).get("klaviyo") or {}
        if not stored.get("private_key"):
            raise KlaviyoError(
                "Klaviyo is not connected for this workspace (setKlaviyoSettings with a private key)"
            )
        return KlaviyoSettings(stored["private_key"], stored.get("base_url") or DEFAULT_BASE_URL)

    async def _report(
        self,
        key: ContactKey,
        entry: dict[str, Any],
        attempt: int,
        ok: bool,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> None:
        event = ExternalSyncResult(f"xsync:{entry['id']}:{attempt}", entry["id"], ok, error, retry_at)
        await self._actors().ask(key, event)

    def worker(self, poll_seconds: float) -> Worker:
        """An arq worker on its own queue, sharing the server's event loop."""
        return Worker(
            functions=[func(_sync_job, name=SYNC_JOB, max_tries=3)],
            queue_name=self.queue_name,
            redis_pool=self._pool,
            ctx={"sync": self},
            handle_signals=False,
            poll_delay=poll_seconds,
            max_jobs=100,
            keep_result=0,
            job_timeout=120,
            log_results=False,
        )


async def _sync_job(ctx: dict[str, Any], workspace_id: str, local_id: str, sync_id: str) -> str:
    sync: KlaviyoSync = ctx["sync"]
    return await sync.run(workspace_id, local_id, sync_id)
