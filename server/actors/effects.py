"""What happens after a turn is committed: timers armed, messages sent, runs projected and counted,
news published.

Each effect is idempotent (timer ids, outbox ids, versioned projections), so recovery may redo
any of them after a crash without a visible duplicate. What became of each send goes to the
status ledger: a permanent failure ends the message (and tells the actor, without waiting: this
runs inside the actor's own turn); a provider id just learnt releases statuses parked for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from server.actors.events import DeferSend, Event, TurnResult
from server.actors.flow_counters import FlowCounters
from server.actors.message_statuses import StatusLedger
from server.channels.base import Channel, SendResult
from server.documents import ContactDoc, TimerDoc
from server.ids import ContactKey
from server.sending.holds import QUIET_HOURS
from server.sending.policy import SendPolicy
from server.sending.rules import MARKETING_TO_US, NO_OPT_IN, TYPING, WINDOW_CLOSED, Deferral, deferrable
from server.store.contacts import ContactRepository
from server.store.messages import MessageRepository
from server.store.runs import RunRepository

log = logging.getLogger(__name__)


class TimerScheduler(Protocol):
    async def schedule(self, key: ContactKey, timer: TimerDoc) -> None: ...


class ChangePublisher(Protocol):
    async def contact_changed(
        self, contact: Mapping[str, Any], run_ids: set[str], flows: set[str] | frozenset[str] = frozenset()
    ) -> None:
        """One turn's news, all subscribers' (the contact, its changed runs, its conversation, the
        flows whose counters it stored), as one message: issue 19."""
        ...


class DeliveryReporter(Protocol):
    """Where a broadcast message's hold, retry or refusal is shown (its recipient's record)."""

    async def note(
        self, contact: Mapping[str, Any], message: dict[str, Any], state: str, info: dict[str, Any]
    ) -> None: ...


REFUSAL_CODES = (MARKETING_TO_US, NO_OPT_IN, WINDOW_CLOSED)


def all_sent(outbox: list[dict[str, Any]], sent: set[str]) -> bool:
    """Whether nothing in a stored ``outbox`` is left to send, given the ids recorded as ``sent``:
    every message of it is one the contact's next commit may drop (``_kept_for_next_commit``)."""
    every = {message["id"] for message in outbox}
    return _kept_for_next_commit(outbox, every, sent) == every


def _kept_for_next_commit(outbox: list[dict[str, Any]], delivered: set[str], recorded: set[str]) -> set[str]:
    """The delivered messages the stored outbox may list until the contact's next commit: those
    recorded as sent, and a read receipt before one of them (``deliver_outbox`` drops it unsent)."""
    kept: set[str] = set()
    answered_later = False
    for message in reversed(outbox):
        if message["id"] in recorded:
            kept.add(message["id"])
            answered_later = True
        elif answered_later and message.get("kind") == TYPING and message["id"] in delivered:
            kept.add(message["id"])
    return kept


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("send policy bookkeeping failed: %s", future.exception())


@dataclass
class Effects:
    contacts: ContactRepository
    runs: RunRepository
    messages: MessageRepository
    channel: Channel
    timers: TimerScheduler
    publisher: ChangePublisher
    ledger: StatusLedger | None = None
    # The send policy (server/sending/): refusals, holds and Meta's "later" codes, before each send.
    policy: SendPolicy | None = None
    # Queue an event for a contact without waiting (holds are recorded by the contact's actor).
    tell: Callable[[ContactKey, Event], asyncio.Future[TurnResult]] | None = None
    deliveries: DeliveryReporter | None = None
    # Flow analytics: the counters each commit carries, stored exactly once (flow_counters.py).
    counters: FlowCounters | None = None
    # Contacts whose outbox kept a message to retry: the next light recovery pass redelivers them.
    stuck_outboxes: set[ContactKey] = field(default_factory=set)
    # What follows commits, running to its end even when the turn that started it was cancelled.
    settling: set[asyncio.Task[None]] = field(default_factory=set)

    async def settle(self, work: Awaitable[None], done: Callable[[], None] | None = None) -> None:
        """Run ``work`` (what follows a commit) to its end even if the awaiting turn is cancelled.

        A shard retired on lease loss, or a stop whose grace ran out, cancels the turns still
        running; a turn past its commit no longer needs the lease, and cutting its effects left the
        committed turn without timers, sends, run projection or applied mark until recovery (issue 19
        measured thousands of inbound messages left pending that way under load). ``done`` is
        called when the work has ended (the workspace's count of work in flight).
        """
        task = asyncio.ensure_future(work)
        self.settling.add(task)
        task.add_done_callback(self.settling.discard)
        if done is not None:
            task.add_done_callback(lambda _: done())
        await asyncio.shield(task)

    async def wait_settled(self, timeout: float) -> None:
        """Let effects still running finish (a stop, before the connections close)."""
        if self.settling:
            await asyncio.wait(set(self.settling), timeout=timeout)

    async def redo_after_commit(self, contact: ContactDoc, applied_inbound: list[str]) -> None:
        """Everything ``after_commit`` does, again, for a committed turn whose effects may have been
        cut: every timer armed (job id = timer id), the outbox delivered (each message looked up
        first: it may have gone), every run projected, the inbound marked applied. All idempotent."""
        key = ContactKey.of_contact(contact)
        for timer in contact.get("timers", []):
            await self.timers.schedule(key, timer)
        await self.deliver_outbox(contact)
        runs = {run["id"] for run in contact.get("runs", [])}
        if runs:
            await self.runs.project(contact, runs)
        if applied_inbound:
            await self.messages.mark_applied(applied_inbound)

    async def after_commit(
        self,
        before: ContactDoc | None,
        after: ContactDoc,
        changed_runs: set[str],
        applied_inbound: list[str],
    ) -> None:
        key = ContactKey.of_contact(after)
        known = {t["id"] for t in (before.get("timers", []) if before is not None else [])}
        for timer in after.get("timers", []):
            if timer["id"] not in known:
                await self.timers.schedule(key, timer)
        queued_before = {m["id"] for m in (before.get("outbox", []) if before is not None else [])}
        await self._report_holds(before, after)
        fresh = {m["id"] for m in after.get("outbox", [])} - queued_before
        await self.deliver_outbox(after, fresh=fresh, lazily=True)
        if changed_runs:
            started = changed_runs - {
                run["id"] for run in (before.get("runs", []) if before is not None else [])
            }
            await self.runs.project(after, changed_runs, started)
        counted: set[str] = set()
        if self.counters is not None:
            counted = await self.counters.committed(after)
        if applied_inbound:
            await self.messages.mark_applied(applied_inbound)
        await self.publisher.contact_changed(after, changed_runs, counted)

    async def deliver_outbox(
        self, contact: ContactDoc, fresh: set[str] | None = None, *, lazily: bool = False
    ) -> None:
        """Send pending messages in order, each past the send policy first.

        A message held (quiet hours, a retry later) keeps the messages of its run behind it
        (a run's order is kept) while others go; a message to retry soon (transport trouble)
        stops the pass, and recovery redelivers. ``fresh``: ids queued by the turn just
        committed (never sent, so no lookup before sending).

        Delivered messages leave ``contact``'s outbox (the actor's copy). The stored copy loses
        them in a write of its own, except, when ``lazily`` (the contact's next commit writes its
        outbox anyway), the messages recorded as sent with the provider's id: that record is what
        a redelivery looks up before sending (``Channel.send``), so such a message is never sent
        twice, and ``sent_messages`` lets recovery pass over a stored outbox holding only those.
        A failure (``OUTCOME_UNKNOWN`` included), recorded with no provider id, always leaves the
        stored outbox at once; so does a read receipt (recorded nowhere) unless a message after it
        is kept: a stored read receipt whose answer went already is dropped unsent, a typing
        indicator then would mislead. Issue 19: that write was a second compare-and-set-sized
        update of the contact for every answered message.
        """
        delivered: list[str] = []
        recorded: set[str] = set()  # sent, with a record naming the provider's id
        behind: set[str] = set()  # runs (or "direct") whose earlier message waits
        retry_soon = False
        outbox: list[dict[str, Any]] = contact.get("outbox", [])
        answered: set[str] | None = None  # what a stored outbox lists that was sent (read once)
        for index, message in enumerate(outbox):
            lane = message.get("run_id") or "direct"
            if lane in behind:
                continue
            if message.get("kind") == TYPING and not (fresh and message["id"] in fresh):
                if answered is None:
                    answered = await self._sent_of(outbox)
                if any(later["id"] in answered for later in outbox[index + 1 :]):
                    delivered.append(message["id"])
                    continue
            decision = await self.policy.before_send(contact, message) if self.policy else None
            if decision is not None and decision.wait:
                behind.add(lane)
                if decision.hold is not None:  # quiet hours reached by another path: record it
                    self._defer(contact, message, decision.hold.until, QUIET_HOURS, decision.hold.detail)
                continue
            if decision is not None and decision.refusal is not None:
                refused = decision.refusal
                result = SendResult(ok=False, retry=False, error_code=refused.code, error=refused.reason)
            else:
                try:
                    is_fresh = fresh is not None and message["id"] in fresh
                    result = await self.channel.send(contact["workspace_id"], message, fresh=is_fresh)
                except Exception:
                    log.exception("sending %s failed; it stays in the outbox", message["id"])
                    retry_soon = True
                    break
            if message.get("kind") == TYPING:
                if not result.ok:  # a read receipt is a courtesy: never worth holding an answer
                    log.info("typing indicator %s not sent: %s", message["id"], result.error_code)
                delivered.append(message["id"])
                continue
            if not result.ok and result.retry:
                later = (
                    self.policy.after_failure(message, result.error_code, result.retry_after)
                    if self.policy
                    else None
                )
                if later is not None:
                    self._defer(contact, message, later.until, later.code, {"why": later.reason}, later)
                    if later.whole_contact:
                        break
                    behind.add(lane)
                    continue
                if not (self.policy and deferrable(result.error_code)):
                    retry_soon = True
                    break
                result = SendResult(  # Meta kept saying "later": the retries are spent
                    ok=False,
                    retry=False,
                    error_code=result.error_code,
                    error=f"{result.error} (retries spent)",
                )
            delivered.append(message["id"])
            if result.ok and result.provider_id:
                recorded.add(message["id"])
            await self._settle_send(contact["workspace_id"], message, result)
            await self._report(contact, message, result)
        if delivered:
            kept = _kept_for_next_commit(outbox, set(delivered), recorded) if lazily else set()
            stored_now = [message_id for message_id in delivered if message_id not in kept]
            if stored_now:
                await self.contacts.pull_outbox(contact["_id"], contact["version"], stored_now)
            contact["outbox"] = [m for m in contact.get("outbox", []) if m["id"] not in delivered]
        key = ContactKey.of_contact(contact)
        if retry_soon:
            self.stuck_outboxes.add(key)
        else:
            self.stuck_outboxes.discard(key)

    async def _sent_of(self, outbox: list[dict[str, Any]]) -> set[str]:
        """The ids of ``outbox``'s messages recorded as sent (read receipts are recorded nowhere)."""
        ids = [message["id"] for message in outbox if message.get("kind") != TYPING]
        return await self.messages.sent_messages(ids) if ids else set()

    def _defer(
        self,
        contact: Mapping[str, Any],
        message: dict[str, Any],
        until: datetime,
        reason: str,
        detail: dict[str, Any],
        later: Deferral | None = None,
    ) -> None:
        """Tell the actor to keep the message (this runs inside its own turn: never wait for it)."""
        attempt = later.attempt if later is not None and later.counted else None
        event = DeferSend(
            event_id=f"defer:{message['id']}:{until.isoformat()}",
            message_id=message["id"],
            until=until,
            reason=reason,
            detail=detail,
            attempt=attempt,
            whole_contact=bool(later and later.whole_contact),
        )
        if self.tell is not None:
            try:
                self.tell(ContactKey.of_contact(contact), event).add_done_callback(_consume)
            except Exception:  # stopping: the message stays in the outbox, recovery decides again
                log.info("could not hold %s now; recovery will", message["id"])

    async def _report_holds(self, before: ContactDoc | None, after: ContactDoc) -> None:
        """Broadcast messages this turn held (quiet hours) or set to retry: their recipients say so."""
        if self.deliveries is None:
            return
        earlier = {m["id"]: m.get("hold") for m in (before.get("outbox", []) if before is not None else [])}
        for message in after.get("outbox", []):
            hold = message.get("hold")
            if not message.get("broadcast_id") or not hold or hold == earlier.get(message["id"]):
                continue
            state = "HELD" if hold.get("reason") == QUIET_HOURS else "RETRYING"
            info = {
                "reason": hold.get("reason"),
                "until": hold.get("until"),
                "attempt": message.get("retries"),
            }
            info["why"] = hold.get("why")
            try:
                await self.deliveries.note(after, message, state, info)
            except Exception:
                log.exception("recording the hold of %s on its broadcast failed", message["id"])

    async def _report(self, contact: Mapping[str, Any], message: dict[str, Any], result: SendResult) -> None:
        """A broadcast message that waited or was refused: its recipient shows how it ended."""
        if self.deliveries is None or not message.get("broadcast_id"):
            return
        if result.ok and not message.get("hold"):
            return
        state = "SENT" if result.ok else ("REFUSED" if result.error_code in REFUSAL_CODES else "FAILED")
        info = {"reason": result.error_code, "why": result.error, "attempt": message.get("retries")}
        try:
            await self.deliveries.note(contact, message, state, info)
        except Exception:
            log.exception("recording the delivery of %s on its broadcast failed", message["id"])

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
