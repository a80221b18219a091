"""What happens after a turn is committed: timers armed, messages sent, runs projected, news published.

Each effect is idempotent (timer ids, outbox ids, versioned projections), so recovery may redo
any of them after a crash without a visible duplicate. What became of each send goes to the
status ledger: a permanent failure ends the message (and tells the actor, without waiting: this
runs inside the actor's own turn); a provider id just learnt releases statuses parked for it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from server.actors.message_statuses import StatusLedger
from server.channels.base import Channel, SendResult
from server.ids import ContactKey
from server.store.contacts import ContactRepository
from server.store.messages import MessageRepository
from server.store.runs import RunRepository

log = logging.getLogger(__name__)


class TimerScheduler(Protocol):
    async def schedule(self, key: ContactKey, timer: dict[str, Any]) -> None: ...


class ChangePublisher(Protocol):
    async def contact_changed(self, contact: dict[str, Any], run_ids: set[str]) -> None: ...


@dataclass
class Effects:
    contacts: ContactRepository
    runs: RunRepository
    messages: MessageRepository
    channel: Channel
    timers: TimerScheduler
    publisher: ChangePublisher
    ledger: StatusLedger | None = None
    # Contacts whose outbox kept a message to retry: the next light recovery pass redelivers them.
    stuck_outboxes: set[ContactKey] = field(default_factory=set)

    async def after_commit(
        self,
        before: dict[str, Any] | None,
        after: dict[str, Any],
        changed_runs: set[str],
        applied_inbound: list[str],
    ) -> None:
        key = ContactKey.of_contact(after)
        known = {t["id"] for t in (before or {}).get("timers", [])}
        for timer in after.get("timers", []):
            if timer["id"] not in known:
                await self.timers.schedule(key, timer)
        queued_before = {m["id"] for m in (before or {}).get("outbox", [])}
        await self.deliver_outbox(after, fresh={m["id"] for m in after.get("outbox", [])} - queued_before)
        if changed_runs:
            await self.runs.project(after, changed_runs)
        if applied_inbound:
            await self.messages.mark_applied(applied_inbound)
        await self.publisher.contact_changed(after, changed_runs)

    async def deliver_outbox(self, contact: dict[str, Any], fresh: set[str] | None = None) -> None:
        """Send pending messages in order; stop at the first one to retry so order is kept.

        ``fresh``: ids queued by the turn just committed (never sent, so no lookup before sending).
        """
        delivered: list[str] = []
        for message in contact.get("outbox", []):
            try:
                is_fresh = fresh is not None and message["id"] in fresh
                result = await self.channel.send(contact["workspace_id"], message, fresh=is_fresh)
            except Exception:
                log.exception("sending %s failed; it stays in the outbox", message["id"])
                break
            if not result.ok and result.retry:
                break
            delivered.append(message["id"])
            await self._settle_send(contact["workspace_id"], message, result)
        if delivered:
            await self.contacts.pull_outbox(contact["_id"], contact["version"], delivered)
            contact["outbox"] = [m for m in contact.get("outbox", []) if m["id"] not in delivered]
        key = ContactKey.of_contact(contact)
        if contact.get("outbox"):
            self.stuck_outboxes.add(key)
        else:
            self.stuck_outboxes.discard(key)

    def take_stuck_outboxes(self) -> list[ContactKey]:
        """Contacts whose outbox kept a message to retry since the last call (for recovery)."""
        stuck = list(self.stuck_outboxes)
        self.stuck_outboxes.clear()
        return stuck

    async def _settle_send(self, workspace_id: str, message: dict[str, Any], result: SendResult) -> None:
        if self.ledger is None:
            return
        try:
            if not result.ok:
                log.info("message %s failed for good: %s %s", message["id"], result.error_code, result.error)
                await self.ledger.send_failed(
                    workspace_id, self.channel.name, message, result.error_code, result.error
                )
            elif result.provider_id:
                await self.ledger.provider_id_known(workspace_id, result.provider_id)
        except Exception:
            log.exception("recording the outcome of message %s failed", message["id"])
