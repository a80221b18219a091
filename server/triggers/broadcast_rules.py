"""Who of a broadcast's audience may be messaged, and WhatsApp's messaging-limit tiers.

Decided per contact when its turn comes (not when the audience is frozen), so an opt-out or a
closed window in between is respected:
- ``NO_OPT_IN``: the broadcast needs marketing consent and the contact has none. Every broadcast
  needs it unless created with ``requireOptIn: false``, which marketing content cannot use.
- ``WINDOW_CLOSED``: the contact's 24-hour window is closed and the flow's first message would be
  a simple message (found by dry-running the flow on a copy of the contact, so a condition that
  routes this contact to a template first is honoured).
- ``CONTACT_WITH_AGENT``: an agent owns the conversation and the flow does not set
  ``settings.runs_while_assigned`` (the actor checks it again when the run starts).
- ``MARKETING_TO_US``: the first template the flow sends is a marketing one and the contact's
  number is a US one: Meta does not deliver those (the send policy, ``server/sending/rules.py``,
  refuses them at the channel too, for flows that reach one later).

The messaging limit is the business portfolio's (``portfolio_of``): the numbers of one portfolio
share it, so a broadcast plans against what all of them have used in the last 24 hours.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.document_copy import copy_document
from server.documents import as_contact
from server.machines import runner
from server.machines.catalog import Catalog
from server.machines.compiler import CompiledFlow, node_edges
from server.machines.definition import FlowDefinition, SimpleMessageNode, TemplateNode
from server.machines.turn import CONTACT_WITH_AGENT, Turn
from server.machines.validator import validate
from server.sending import rules
from server.sending.zones import recipient_country
from server.window import window_open

TIERS: dict[str, int | None] = {
    "TIER_250": 250,
    "TIER_2K": 2_000,
    "TIER_10K": 10_000,
    "TIER_100K": 100_000,
    "TIER_UNLIMITED": None,
}
DEFAULT_TIER = "TIER_UNLIMITED"

MARKETING_TO_US = rules.MARKETING_TO_US
NO_OPT_IN = "NO_OPT_IN"
WINDOW_CLOSED = "WINDOW_CLOSED"
CONTACT_GONE = "CONTACT_GONE"


def tier_limit(tier: str | None) -> int | None:
    """Unique contacts reachable outside the window per rolling 24 h (None: unlimited)."""
    return TIERS.get(tier or DEFAULT_TIER)


@dataclass
class Plan:
    """What the runner needs to decide and start each recipient of one broadcast."""

    flow_id: str
    version: int
    compiled: CompiledFlow
    needs_opt_in: bool
    window_sensitive: bool
    marketing_first: bool = False  # the first template a run meets is a MARKETING one

    def first_template(self) -> TemplateNode | None:
        """The template a run meets first when it sends one before any simple message."""
        definition = self.compiled.definition
        by_id = {n.id: n for n in definition.nodes}
        seen: set[str] = set()
        queue = [definition.start] if definition.start else []
        while queue:
            node_id = queue.pop(0)
            node = by_id.get(node_id or "")
            if node is None or node_id in seen:
                continue
            seen.add(node_id)
            if isinstance(node, TemplateNode):
                return node
            if isinstance(node, SimpleMessageNode):
                continue
            queue.extend(t for _, t in node_edges(node) if t)
        return None


def window_sensitive(definition: FlowDefinition) -> bool:
    """A simple message can come before any template when the business starts the conversation.

    The validator's webhook-start rule says exactly that, so the two never disagree.
    """
    issues = validate(definition, Catalog(starts_from_webhook=True))
    return any(i.code == "SIMPLE_MESSAGE_AFTER_WEBHOOK_START" for i in issues)


Matcher = Callable[[dict[str, Any], Mapping[str, Any], datetime, str], bool]  # + workspace zone


@dataclass
class Judge:
    """Applies a plan's rules to contacts; holds what every decision of one batch shares."""

    plan: Plan
    now: datetime
    timezone: str
    matcher: Matcher | None
    fields: dict[str, tuple[str, list[str]]]

    def skip_reason(self, contact: dict[str, Any] | None) -> str | None:
        if contact is None:
            return CONTACT_GONE
        if contact.get("assigned_agent") and not self.plan.compiled.definition.settings.runs_while_assigned:
            return CONTACT_WITH_AGENT
        if self.plan.needs_opt_in and not contact.get("opted_in"):
            return NO_OPT_IN
        if self.plan.marketing_first and recipient_country(contact.get("phone")) == "US":
            return MARKETING_TO_US
        if self.plan.window_sensitive and not window_open(contact.get("last_inbound_at"), self.now):
            if self._first_send_blocked(contact):
                return WINDOW_CLOSED
        return None

    def _first_send_blocked(self, contact: dict[str, Any]) -> bool:
        working = as_contact(copy_document(contact))
        working.update({"runs": [], "timers": [], "outbox": []})
        turn = Turn(
            contact=working,
            now=self.now,
            timezone=self.timezone,
            segment_matcher=self.matcher,
            fields=self.fields,
        )
        run = runner.new_run(turn, self.plan.compiled, self.plan.flow_id, self.plan.version, {})
        runner.start(turn, self.plan.compiled, run)
        blocked = any(s.get("outcome") == "WINDOW_CLOSED" for s in run.get("steps", []))
        return blocked and not working.get("outbox")


def marketing_first(plan: Plan, categories: dict[str, str]) -> bool:
    """Whether the first template of ``plan``'s flow is a MARKETING one (by template name)."""
    first = plan.first_template()
    return first is not None and categories.get(first.template) == "MARKETING"


def portfolio_of(channel: dict[str, Any] | None) -> str | None:
    """The business portfolio whose messaging limit a send through ``channel`` uses (None: the
    workspace's own, shared by its numbers without a business id)."""
    business = (channel or {}).get("business_id")
    return str(business) if business else None
