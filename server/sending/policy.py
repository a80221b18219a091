"""``SendPolicy``: the decision point every outbound message passes, twice.

1. ``screen_turn``, inside the actor's turn that queued messages, before its commit: stamps what
   later decisions need (template category, "answers the customer", exempt from quiet hours),
   holds automated messages due in quiet hours (``holds.hold``: durable, in the same commit),
   lets held ones go when the customer writes, and puts the typing indicator in front of a
   flow's answer to an inbound WhatsApp message.
2. ``before_send``, in ``Effects.deliver_outbox`` just before the channel: skips held messages,
   refuses what must not go (``rules.refusal``), and catches quiet hours a message reached by
   another path (a redelivery after a restart). ``after_failure`` turns Meta's "later" codes into
   durable retries (``rules.deferral``).

Which messages quiet hours hold: *automated* ones, what the business starts on its own (flows
started by a broadcast, a webhook, the API, a timer, a delay, a no-reply timeout, a status).
Never an agent's message, never a flow's answer to a message the customer has just sent (they
are awake and waiting; the turn applying their message marks what it queues ``answers``), never
a flow marked ``settings.transactional`` (order confirmations, delivery notices) and never an
authentication template (a one-time code held till morning is useless).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from server.clock import Clock
from server.documents import ContactDoc
from server.expiring import ExpiringCache
from server.ids import new_id
from server.machines.turn import Turn
from server.sending import holds
from server.sending.quiet_hours import quiet_until
from server.sending.rules import TYPING, Deferral, Refusal, deferral, refusal
from server.sending.settings import SendingRules
from server.sending.zones import contact_zone

RULES_TTL_SECONDS = 5.0
EXEMPT_CATEGORIES = ("AUTHENTICATION",)

RulesLoader = Callable[[str], Awaitable[SendingRules]]
TransactionalLookup = Callable[[dict[str, Any]], Awaitable[bool]]
"""Whether the flow that queued an outbox message is marked transactional (by the run's flow)."""


@dataclass(frozen=True)
class Answering:
    """The inbound message a turn applies: what its answers reply to."""

    event_id: str
    provider_id: str | None = None
    channel: str | None = None
    channel_id: str | None = None


@dataclass(frozen=True)
class QuietHold:
    until: datetime
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """``go``; else ``wait`` (held; ``hold`` set when the hold is new and must be recorded) or
    ``refusal`` (fails for good without being sent)."""

    go: bool = False
    wait: bool = False
    hold: QuietHold | None = None
    refusal: Refusal | None = None


GO = Decision(go=True)
WAIT = Decision(wait=True)


class SendPolicy:
    def __init__(self, load_rules: RulesLoader, clock: Clock) -> None:
        self._load_rules = load_rules
        self._clock = clock
        self._rules: ExpiringCache[str, SendingRules] = ExpiringCache(RULES_TTL_SECONDS)

    async def rules_of(self, workspace_id: str) -> SendingRules:
        """The workspace's sending settings and time zone, cached briefly (every turn asks)."""
        return await self._rules.get(workspace_id, lambda: self._load_rules(workspace_id))

    def forget(self, workspace_id: str) -> None:
        self._rules.forget(workspace_id)

    # --- 1. in the turn ---------------------------------------------------------------------

    async def screen_turn(
        self,
        turn: Turn,
        queued_before: set[str],
        answering: Answering | None,
        transactional: TransactionalLookup,
    ) -> None:
        contact = turn.contact
        outbox: list[dict[str, Any]] = contact.get("outbox") or []
        if not outbox:
            return
        fresh = [m for m in outbox if m["id"] not in queued_before]
        for message in fresh:
            await self._stamp(turn, message, answering, transactional)
        rules = await self.rules_of(contact["workspace_id"])
        if answering is not None:
            for message in outbox:  # the customer is awake: nothing waits for the night to end
                if (message.get("hold") or {}).get("reason") == holds.QUIET_HOURS and holds.held(
                    message, turn.now
                ):
                    holds.release(turn, message, answering.event_id)
        elif rules.settings.quiet_hours:
            due = [m for m in outbox if automated(m) and not holds.held(m, turn.now)]
            found = self.quiet_hold(contact, rules, turn.now) if due else None
            if found is not None:
                for message in due:
                    holds.hold(turn, message, found.until, holds.QUIET_HOURS, found.detail)
        if answering is not None and rules.settings.typing_indicator:
            _typing_first(contact, fresh, answering, turn.now)

    async def _stamp(
        self,
        turn: Turn,
        message: dict[str, Any],
        answering: Answering | None,
        transactional: TransactionalLookup,
    ) -> None:
        if message.get("kind") == "template":
            spec = message.get("template") or {}
            categories = turn.template_categories
            name: str = spec.get("name") or ""
            category = categories.get((name, spec.get("language") or "")) or categories.get((name, ""))
            if category:
                message["template_category"] = category
            if category in EXEMPT_CATEGORIES:
                message["quiet_exempt"] = True
        if answering is not None and message.get("sender") != "agent":
            message["answers"] = answering.event_id
        if message.get("run_id") and not message.get("quiet_exempt") and await transactional(message):
            message["quiet_exempt"] = True

    def quiet_hold(self, contact: Mapping[str, Any], rules: SendingRules, now: datetime) -> QuietHold | None:
        """Until when quiet hours hold an automated message to ``contact`` due ``now``, or None."""
        windows = rules.settings.quiet_hours
        if not windows:
            return None
        zone, source = contact_zone(contact, rules.timezone)
        until = quiet_until(windows, now, zone)
        if until is None:
            return None
        return QuietHold(until, {"timezone": zone.key, "timezone_from": source})

    # --- 2. at the channel ------------------------------------------------------------------

    async def before_send(self, contact: Mapping[str, Any], message: dict[str, Any]) -> Decision:
        now = self._clock.now()
        if holds.held(message, now) or holds.paused(contact, now):
            return WAIT
        if message.get("kind") == TYPING:
            return GO
        refused = refusal(contact, message, now)
        if refused is not None:
            return Decision(refusal=refused)
        if automated(message):
            rules = await self.rules_of(contact["workspace_id"])
            found = self.quiet_hold(contact, rules, now)
            if found is not None:
                return Decision(wait=True, hold=found)
        return GO

    def after_failure(
        self, message: dict[str, Any], code: str | None, retry_after: float | None = None
    ) -> Deferral | None:
        """A durable retry for Meta's "later" codes, or None (not one of them, or retries spent)."""
        return deferral(code, int(message.get("retries") or 0), self._clock.now(), retry_after)


def automated(message: dict[str, Any]) -> bool:
    """Quiet hours apply: not an agent's, not an answer to the customer (nor released by their
    writing), not exempt, not a receipt."""
    return not (
        message.get("sender") == "agent"
        or message.get("answers")
        or message.get("released_by")
        or message.get("quiet_exempt")
        or message.get("kind") == TYPING
    )


def _typing_first(
    contact: ContactDoc, fresh: list[dict[str, Any]], answering: Answering, now: datetime
) -> None:
    """Put one read receipt with the typing indicator before a flow's first answer (WhatsApp only).

    Once per inbound message: the turn applying it runs once (applied events are deduplicated),
    and only when a run answered in it; never for broadcasts, timers or agents (not inbound turns,
    or not a run's message).
    """
    if answering.channel != "whatsapp" or not answering.provider_id:
        return
    first = next((m for m in fresh if m.get("run_id") and m.get("kind") != TYPING), None)
    if first is None:
        return
    outbox: list[dict[str, Any]] = contact["outbox"]
    receipt = {
        "id": new_id("typ"),
        "kind": TYPING,
        "run_id": None,
        "to": contact.get("phone"),
        "reply_to": answering.provider_id,
        "channel_id": answering.channel_id,
        "created_at": now,
    }
    outbox.insert(outbox.index(first), receipt)
