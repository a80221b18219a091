"""Status reports of outbound messages: stored first, put on the message, then told to the contact.

Reports come from the provider's webhook (sent/delivered/read/failed, with pricing) and from a
permanent send failure. Each is stored once in ``message_statuses`` (the webhook is acknowledged
only after that), applied to the message document (furthest status wins, every time kept), and
then told to the contact's actor as a ``MessageStatus`` so the run that sent it gets a step.

A report can arrive before the send response that names the message's provider id has been
recorded: it is *parked* and applied when the id becomes known (``provider_id_known``, called
after each send) or by the recovery pass. Telling never waits for the turn (the caller may be
that very actor), and a turn confirmed by the actor marks the report applied.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from redis.exceptions import RedisError

from server.actors.events import Event, MessageStatus, TurnResult
from server.channels.whatsapp.errors import error_title, reported_error
from server.clock import Clock
from server.errors import Unavailable
from server.identity import message_address
from server.ids import ContactKey, scoped_id
from server.redis_clients import RedisCommands
from server.store.messages import MessageRepository
from server.store.statuses import MessageStatusRepository, report_id

log = logging.getLogger(__name__)

PARKED_FOR = timedelta(days=7)  # a report whose message never shows up is dropped after this

Tell = Callable[[ContactKey, Event], "asyncio.Future[TurnResult]"]


@dataclass(frozen=True)
class StatusReport:
    """A provider's report about one outbound message, in the provider's own terms."""

    provider_id: str
    status: str
    at: datetime
    error_code: str | None = None
    error: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    pricing: dict[str, Any] | None = None
    conversation: dict[str, Any] | None = None


class ParkedMarks:
    """A short-lived Redis flag per (workspace, provider id) that has parked reports.

    Every send would otherwise ask the store whether a report is parked for its new provider
    id, which is almost never the case. The flag is set *before* a report looks for its message,
    so either the report finds the message, or the sender (which records the message first and
    then reads the flag) finds the flag. If Redis fails, the sender asks the store anyway.
    """

    def __init__(self, redis: RedisCommands, prefix: str, ttl_seconds: int = 3600) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl = ttl_seconds

    async def mark(self, workspace_id: str, provider_id: str) -> None:
        try:
            await self._redis.set(self._prefix + scoped_id(workspace_id, provider_id), 1, ex=self._ttl)
        except RedisError as exc:  # the recovery pass still settles the report
            log.warning("could not flag parked status for %s: %s", provider_id, exc)

    async def maybe_parked(self, workspace_id: str, provider_id: str) -> bool:
        try:
            return bool(await self._redis.exists(self._prefix + scoped_id(workspace_id, provider_id)))
        except RedisError:
            return True


Pricer = Callable[[dict[str, Any], dict[str, Any] | None], dict[str, Any]]
"""Fields to set on a message from a status's ``pricing`` block (the channel's cost reconciliation)."""


class StatusLedger:
    def __init__(
        self,
        messages: MessageRepository,
        statuses: MessageStatusRepository,
        tell: Tell,
        clock: Clock,
        price: Pricer | None = None,
        marks: ParkedMarks | None = None,
    ) -> None:
        self._marks = marks
        self._messages = messages
        self._price = price
        self._statuses = statuses
        self._tell = tell
        self._clock = clock
        self._confirmations: set[asyncio.Task[None]] = set()

    async def report(self, workspace_id: str, channel_id: str | None, report: StatusReport) -> str:
        """Store and apply a provider report: ``applied``, ``parked`` or ``duplicate``.

        Everything is keyed by workspace: a report names a provider id, and whoever posts it
        only ever reaches its own workspace's messages.
        """
        document: dict[str, Any] = {
            "_id": report_id(workspace_id, report.provider_id, report.status),
            "workspace_id": workspace_id,
            "channel_id": channel_id,
            "provider_id": report.provider_id,
            "status": report.status,
            "at": report.at,
            "error_code": report.error_code,
            "error": report.error,
            "errors": report.errors,
            "pricing": report.pricing,
            "conversation": report.conversation,
            "message_id": None,
            "phone": None,
            "contact_id": None,
            "state": "parked",
            "received_at": self._clock.now(),
        }
        new, existing = await self._statuses.record_report(document)
        if not new:
            if existing is None or existing.get("state") in ("applied", "expired"):
                return "duplicate"
            if existing.get("state") == "recorded":
                self._tell_actor(existing)  # a retry while the first turn is pending: harmless
                return "duplicate"
            document = existing
        if self._marks is not None:
            await self._marks.mark(
                workspace_id, report.provider_id
            )  # before looking for the message: see ParkedMarks
        return await self._settle(document)

    async def send_failed(
        self,
        workspace_id: str,
        channel: str,
        message: dict[str, Any],
        error_code: str | None,
        error: str | None,
    ) -> None:
        """A permanent send failure of an outbox message: the message ends failed with its code."""
        now = self._clock.now()
        record = {k: v for k, v in message.items() if k not in ("id", "to")}
        record.update(
            {
                "_id": message["id"],
                "workspace_id": workspace_id,
                **message_address(message),
                "channel": channel,
            }
        )
        record.setdefault("at", now)
        await self._messages.record_send_failure(record, error_code, error, now)
        document = {
            "_id": f"send:{message['id']}",
            "workspace_id": workspace_id,
            "channel_id": None,
            "provider_id": None,
            "status": "failed",
            "at": now,
            "error_code": error_code,
            "error": error,
            "message_id": message["id"],
            "phone": message.get("to"),
            "contact_id": message.get("contact_id"),
            "state": "recorded",
            "received_at": now,
        }
        await self._statuses.insert(document)
        self._tell_actor(document)

    async def provider_id_known(self, workspace_id: str, provider_id: str) -> int:
        """Apply the reports parked for a message whose provider id was just recorded."""
        if self._marks is not None and not await self._marks.maybe_parked(workspace_id, provider_id):
            return 0
        parked = await self._statuses.parked_for(workspace_id, provider_id)
        for document in parked:
            await self._settle(document)
        return len(parked)

    async def recover(self, recorded_before: datetime) -> int:
        """Retry parked reports and re-tell unconfirmed ones; drop reports parked too long."""
        count = 0
        expired_before = self._clock.now() - PARKED_FOR
        async for document in self._statuses.unfinished(recorded_before):
            count += 1
            if document["state"] == "recorded":
                self._tell_actor(document)
            elif await self._settle(document) == "parked" and document["received_at"] < expired_before:
                log.warning("dropping status %s: no message with that provider id", document["_id"])
                await self._statuses.set_state(document["_id"], "expired")
        return count

    async def _settle(self, document: dict[str, Any]) -> str:
        message = await self._messages.find_by_provider_id(document["workspace_id"], document["provider_id"])
        if message is None:
            return "parked"
        extra = self._price(message, document.get("pricing")) if self._price else {}
        _, title, detail = reported_error(document.get("errors"))
        if title is not None or detail is not None:  # Meta's own words, kept apart (errorTitle/Detail)
            extra = {**extra, "error_title": title, "error_detail": detail}
        await self._messages.apply_status(
            message["_id"],
            document["status"],
            document["at"],
            pricing=document.get("pricing"),
            conversation=document.get("conversation"),
            error_code=document.get("error_code"),
            error=document.get("error"),
            extra=extra or None,
        )
        contact = {"phone": message.get("phone"), "contact_id": message.get("contact_id")}
        await self._statuses.attach(document["_id"], message["_id"], contact)
        self._tell_actor({**document, "message_id": message["_id"], **contact})
        return "applied"

    def _tell_actor(self, document: dict[str, Any]) -> None:
        key = ContactKey.referenced_by(document)
        event = MessageStatus(
            event_id=document["_id"],
            message_id=document["message_id"],
            status=document["status"],
            at=document["at"],
            error_code=document.get("error_code"),
            error=document.get("error"),
            pricing=document.get("pricing"),
            error_title=reported_error(document.get("errors"))[1] or error_title(document.get("error_code")),
        )
        try:
            future = self._tell(key, event)
        except Unavailable:
            return  # shutting down: the report stays "recorded" and recovery tells it again
        future.add_done_callback(lambda done: self._confirm(done, document["_id"]))

    def _confirm(self, done: asyncio.Future[TurnResult], status_id: str) -> None:
        if done.cancelled() or done.exception() is not None:
            return  # the actor logged it; recovery tells the report again
        task = asyncio.get_running_loop().create_task(self._statuses.mark_applied(status_id))
        self._confirmations.add(task)
        task.add_done_callback(self._confirmed)

    def _confirmed(self, task: asyncio.Task[None]) -> None:
        self._confirmations.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("could not mark status applied: %s", task.exception())

    async def drain(self) -> None:
        """Wait for pending confirmations (shutdown, tests)."""
        if self._confirmations:
            await asyncio.gather(*list(self._confirmations), return_exceptions=True)
