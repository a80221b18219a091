"""Rebuild what Redis and memory may have lost from MongoDB, the source of truth.

Run at start-up and periodically: every timer in a contact document is (re-)enqueued in arq
(ids already queued or running are skipped), undelivered outbox messages are sent, inbound
messages that were stored but never applied are handed to their actors again, message status
reports still parked (or told but never confirmed) are retried, and flow counters a crash left
uncounted in contact documents are counted (``FlowCounters.recover``).

Timers are armed ``batch_size`` at a time with one Redis call each
(``ArqTimerScheduler.schedule_many``), the next batch being read from the store while the
previous one is written: re-arming 100,000 timers is bounded by reading the contacts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from server.actors.effects import all_sent
from server.actors.events import Event, InboundMessage, Redeliver, TurnResult
from server.actors.flow_counters import RECOVERY_WINDOW, FlowCounters
from server.actors.message_statuses import StatusLedger
from server.actors.timers import ArqTimerScheduler
from server.clock import Clock
from server.documents import TimerDoc
from server.ids import ContactKey
from server.machines.flow_counts import COUNTS_FIELD
from server.sending import holds
from server.store.contacts import ContactRepository
from server.store.flow_counters import Pending
from server.store.messages import MessageRepository
from server.workspace_gate import WorkspaceGate
from server.workspace_inflight import Ticket

log = logging.getLogger(__name__)

INBOUND_GRACE = timedelta(seconds=30)  # default of Settings.inbound_grace_seconds
TIMER_BATCH = 500


class Actors(Protocol):
    """The actor system as recovery uses it (``ActorSystem`` or ``ShardedActors``)."""

    def tell(self, key: ContactKey, event: Event) -> Awaitable[TurnResult]: ...


@dataclass
class RecoveryReport:
    timers: int = 0  # timers found in contact documents
    timers_armed: int = 0  # of which were missing in Redis and were enqueued
    outboxes: int = 0
    inbound: int = 0
    statuses: int = 0
    counts: int = 0  # contacts still carrying flow counters (counted now unless counted already)


async def recover(
    contacts: ContactRepository,
    messages: MessageRepository,
    timers: ArqTimerScheduler,
    actors: Actors,
    clock: Clock,
    inbound_grace: timedelta = INBOUND_GRACE,
    ledger: StatusLedger | None = None,
    batch_size: int = TIMER_BATCH,
    scan_contacts: bool = True,
    stuck_outboxes: Iterable[ContactKey] = (),
    counters: FlowCounters | None = None,
    counts_window: timedelta = RECOVERY_WINDOW,
    gate: WorkspaceGate | None = None,
) -> RecoveryReport:
    """One pass. ``scan_contacts`` False skips the scan of every contact for timers and outboxes
    (the costly part at scale: run at start, when Redis lost its data, and now and then) and
    only redelivers the outboxes this process saw stuck. The scan hands ``counters`` the flow
    counters of turns committed within ``counts_window``. ``gate``: contacts of a workspace being
    deleted are skipped, and what the scan writes for the others counts as their work in flight."""
    report = RecoveryReport()
    if scan_contacts:
        counts_since = clock.now() - counts_window if counters is not None else None
        await _rearm_from_contacts(
            contacts,
            timers,
            actors,
            clock,
            batch_size,
            report,
            counters=counters,
            counts_since=counts_since,
            gate=gate,
            messages=messages,
        )
    else:
        for key in stuck_outboxes:
            _redeliver(actors, key, clock)
            report.outboxes += 1
    async for message in messages.unapplied_inbound(clock.now() - inbound_grace):
        key = ContactKey.referenced_by(message)
        messages.settle_when_applied(message["_id"], actors.tell(key, InboundMessage.from_record(message)))
        report.inbound += 1
    if ledger is not None:
        report.statuses = await ledger.recover(clock.now() - inbound_grace)
    if report.timers or report.outboxes or report.inbound or report.statuses or report.counts:
        log.info("recovery: %s", report)
    return report


async def rearm_workspace(
    contacts: ContactRepository,
    timers: ArqTimerScheduler,
    actors: Actors,
    clock: Clock,
    workspace_id: str,
    batch_size: int = TIMER_BATCH,
) -> RecoveryReport:
    """Re-arm one workspace's timers and redeliver its outboxes: held while an operator had it
    disabled, they run now (one that fell due meanwhile fires at once)."""
    report = RecoveryReport()
    await _rearm_from_contacts(contacts, timers, actors, clock, batch_size, report, workspace_id)
    log.info("workspace %s enabled: %s", workspace_id, report)
    return report


async def _rearm_from_contacts(
    contacts: ContactRepository,
    timers: ArqTimerScheduler,
    actors: Actors,
    clock: Clock,
    batch_size: int,
    report: RecoveryReport,
    workspace_id: str | None = None,
    counters: FlowCounters | None = None,
    counts_since: datetime | None = None,
    gate: WorkspaceGate | None = None,
    messages: MessageRepository | None = None,
) -> None:
    """Every timer held in a contact (of ``workspace_id``, or all) re-armed (batch N+1 read while
    batch N is written to Redis), every contact with an undelivered outbox told to redeliver, and
    in the same scan the flow counters contacts carry handed to ``counters`` (counted unless
    counted already). With a ``gate``, each contact read counts as its workspace's work in flight
    until what the scan writes for it is written (a deletion waits for that much, not a whole
    pass); contacts of a workspace being deleted are skipped. With ``messages``, an outbox holding
    only messages recorded as sent (left for the contact's next commit to drop,
    ``Effects.deliver_outbox``) is passed over."""
    batch: list[tuple[ContactKey, TimerDoc]] = []
    carried: list[Pending] = []
    outboxes: list[tuple[ContactKey, list[dict[str, Any]]]] = []  # to redeliver unless all sent
    writing: asyncio.Task[int] | None = None  # the previous batch, written while the next is read
    in_batch: list[Ticket] = []  # of the contacts whose timers are in ``batch``
    in_writing: list[Ticket] = []  # of those in ``writing``
    in_carried: list[Ticket] = []  # of those in ``carried``

    async def redeliver_unsent() -> None:
        nonlocal outboxes
        sent: set[str] = set()
        if messages is not None and outboxes:
            sent = await messages.sent_messages([m["id"] for _, outbox in outboxes for m in outbox])
        for key, outbox in outboxes:
            if not all_sent(outbox, sent):
                _redeliver(actors, key, clock)
                report.outboxes += 1
        outboxes = []

    async def written() -> None:
        nonlocal writing
        if writing is not None:
            report.timers_armed += await writing
            writing = None
        _release(in_writing)

    try:
        async for document in contacts.with_pending_work(workspace_id, counts_since):
            key = ContactKey.of_contact(document)
            if gate is not None and gate.refuses_now(key.workspace_id):
                continue  # being deleted: nothing of it is to be written again
            if counters is not None and document.get(COUNTS_FIELD):
                carried.append((document["_id"], document["workspace_id"], document[COUNTS_FIELD]))
                if gate is not None:
                    in_carried.append(gate.carry(key.workspace_id))
                report.counts += 1
                if len(carried) >= batch_size:
                    await counters.recount(carried)
                    carried = []
                    _release(in_carried)
            for timer in document.get("timers", []):
                batch.append((key, timer))
                report.timers += 1
            if gate is not None and document.get("timers"):
                in_batch.append(gate.carry(key.workspace_id))
            if len(batch) >= batch_size:
                await written()
                writing = asyncio.create_task(timers.schedule_many(batch))
                in_writing.extend(in_batch)
                in_batch.clear()
                batch = []
            if document.get("outbox") and not holds.waiting(document, clock.now()):
                # held messages have wake timers: nothing to do now
                outboxes.append((key, document["outbox"]))
                if len(outboxes) >= batch_size:
                    await redeliver_unsent()
        await redeliver_unsent()
        await written()
        if batch:
            report.timers_armed += await timers.schedule_many(batch)
        if carried and counters is not None:
            await counters.recount(carried)
    finally:
        if writing is not None and not writing.done():
            writing.cancel()
            await asyncio.gather(writing, return_exceptions=True)  # its tickets held until it ended
        for tickets in (in_batch, in_writing, in_carried):
            _release(tickets)


def _release(tickets: list[Ticket]) -> None:
    for ticket in tickets:
        ticket.release()
    tickets.clear()


def _redeliver(actors: Actors, key: ContactKey, clock: Clock) -> None:
    actors.tell(key, Redeliver(event_id=f"redeliver:{clock.now().isoformat()}"))
