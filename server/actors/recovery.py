"""Rebuild what Redis and memory may have lost from MongoDB, the source of truth.

Run at start-up and periodically: every timer in a contact document is (re-)enqueued in arq
(arq ignores ids already queued), undelivered outbox messages are sent, inbound messages
that were stored but never applied are handed to their actors again, and message status reports
still parked (or told but never confirmed) are retried.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from server.actors.events import InboundMessage, Redeliver
from server.actors.message_statuses import StatusLedger
from server.actors.system import ActorSystem
from server.actors.timers import ArqTimerScheduler
from server.clock import Clock
from server.ids import ContactKey
from server.store.contacts import ContactRepository
from server.store.messages import MessageRepository

log = logging.getLogger(__name__)

INBOUND_GRACE = timedelta(seconds=30)


@dataclass
class RecoveryReport:
    timers: int = 0
    outboxes: int = 0
    inbound: int = 0
    statuses: int = 0


async def recover(
    contacts: ContactRepository,
    messages: MessageRepository,
    timers: ArqTimerScheduler,
    actors: ActorSystem,
    clock: Clock,
    inbound_grace: timedelta = INBOUND_GRACE,
    ledger: StatusLedger | None = None,
) -> RecoveryReport:
    report = RecoveryReport()
    async for document in contacts.with_pending_work():
        key = ContactKey(document["workspace_id"], document["phone"])
        for timer in document.get("timers", []):
            await timers.schedule(key, timer)
            report.timers += 1
        if document.get("outbox"):
            actors.tell(key, Redeliver(event_id=f"redeliver:{clock.now().isoformat()}"))
            report.outboxes += 1
    async for message in messages.unapplied_inbound(clock.now() - inbound_grace):
        key = ContactKey(message["workspace_id"], message["phone"])
        actors.tell(key, InboundMessage.from_record(message))
        report.inbound += 1
    if ledger is not None:
        report.statuses = await ledger.recover(clock.now() - inbound_grace)
    if report.timers or report.outboxes or report.inbound or report.statuses:
        log.info("recovery: %s", report)
    return report
