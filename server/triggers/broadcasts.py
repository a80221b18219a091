"""Broadcast use cases: create (now or at ``start_at``), pause, resume, cancel, progress, estimate.

A broadcast sends a flow, or a single template, to the contacts of a segment. Its audience is
frozen (``RecipientRepository``: ``broadcast_audience``, each outcome then written once into
``broadcast_recipients``) when it starts; the per-process ``BroadcastRunner`` then
starts each recipient through its contact actor. A template broadcast runs as a hidden one-node
flow (``hidden: true``, named after the broadcast) so every send goes through the same runs,
outbox and channel as any flow.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from server.actors.flow_cache import FlowCache
from server.channels.choice import chosen_channel_id
from server.channels.router import ChannelRouter
from server.channels.whatsapp.costs import estimate as estimate_cost
from server.clock import Clock, as_utc
from server.errors import Conflict, InvalidInput, NotFound
from server.ids import new_id
from server.machines.compiler import compile_flow
from server.machines.definition import FlowDefinition, TemplateNode, parse_flow
from server.pubsub import RedisPubSub
from server.segments import matches, to_mongo_filter, validate_segment
from server.store.broadcasts import (
    AudienceRepository,
    BroadcastRepository,
    MessagingLimitRepository,
    RecipientRepository,
)
from server.store.catalog import TemplateRepository
from server.store.channels import ChannelRepository
from server.store.flows import FlowRepository
from server.text_input import MAX_BROADCAST_NAME, checked_name
from server.triggers.broadcast_rules import (
    TIERS,
    Judge,
    Plan,
    marketing_first,
    portfolio_of,
    tier_limit,
    window_sensitive,
)
from server.window import window_open
from server.workspace_caches import WorkspaceCaches

STATUSES = ("scheduled", "running", "paused", "completed", "cancelled", "failed")
UNUSABLE_TEMPLATE = ("REJECTED", "PAUSED", "DISABLED")  # the sandbox sends drafts; WhatsApp: APPROVED only
# "accepted" (and Meta's held/paused answers) is what the Graph API says when it takes a message;
# the status webhooks then move it to sent, delivered, read, or failed.
STATUS_RANK = {"accepted": 1, "held_for_quality_assessment": 1, "sent": 1, "delivered": 2, "read": 3}
DAY = timedelta(hours=24)
_BUSINESS_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")


class BroadcastPlanServices(Protocol):
    """Planning a broadcast: its flow, compiled, and the templates it sends."""

    @property
    def flow_cache(self) -> FlowCache: ...

    @property
    def flows(self) -> FlowRepository: ...

    @property
    def templates(self) -> TemplateRepository: ...


class SendingChannelServices(Protocol):
    """Choosing the channel a broadcast sends from (the channel router)."""

    @property
    def channel(self) -> ChannelRouter: ...


class BroadcastDraftServices(BroadcastPlanServices, Protocol):
    """Checking a broadcast before it is stored or estimated: its flow or template, its channel."""

    @property
    def channels(self) -> ChannelRepository: ...

    @property
    def clock(self) -> Clock: ...


class BroadcastServices(BroadcastDraftServices, Protocol):
    """Creating, pausing, resuming and cancelling broadcasts, and their progress."""

    @property
    def broadcasts(self) -> BroadcastRepository: ...

    @property
    def pubsub(self) -> RedisPubSub: ...

    @property
    def recipients(self) -> RecipientRepository: ...

    @property
    def wake_broadcasts(self) -> Callable[[], None]: ...


class BroadcastEstimateServices(BroadcastDraftServices, SendingChannelServices, Protocol):
    """Estimating a broadcast: its audience now, the messaging limit it is paced by."""

    @property
    def audience(self) -> AudienceRepository: ...

    @property
    def caches(self) -> WorkspaceCaches: ...

    @property
    def limits(self) -> MessagingLimitRepository: ...


class MessagingTierServices(Protocol):
    """Reading and setting a business's messaging-limit tier (a change wakes the broadcast runner)."""

    @property
    def limits(self) -> MessagingLimitRepository: ...

    @property
    def wake_broadcasts(self) -> Callable[[], None]: ...


def broadcast_topic(workspace_id: str, broadcast_id: str) -> str:
    return f"broadcast:{workspace_id}:{broadcast_id}"


async def _categories(services: BroadcastPlanServices, workspace_id: str) -> dict[str, str]:
    """Template name -> category (MARKETING wins when languages disagree)."""
    found: dict[str, str] = {}
    for template in await services.templates.list(workspace_id):
        if found.get(template["name"]) != "MARKETING":
            found[template["name"]] = template["category"]
    return found


def _uses_marketing(definition: FlowDefinition, categories: dict[str, str]) -> bool:
    return any(
        isinstance(n, TemplateNode) and categories.get(n.template) == "MARKETING" for n in definition.nodes
    )


def _template_flow(name: str, template: dict[str, Any]) -> dict[str, Any]:
    node = {"id": "send", "type": "template", "template": template["name"], "next": None}
    node["language"] = template.get("language") or "es"
    if template.get("params"):
        node["params"] = template["params"]
    return {"name": name, "start": "send", "nodes": [node], "settings": {"supersede": False}}


@dataclass
class Draft:
    """A checked broadcast input: what it sends and to whom, not yet stored."""

    name: str
    segment: Any
    start_at: datetime
    require_opt_in: bool
    flow_id: str | None
    template: dict[str, Any] | None
    definition: FlowDefinition
    categories: dict[str, str]
    channel_id: str | None = None  # the number it sends from (None: the flow's, else the default)


async def _check(services: BroadcastDraftServices, workspace_id: str, data: dict[str, Any]) -> Draft:
    flow_id, template = data.get("flow_id"), data.get("template")
    if (flow_id is None) == (template is None):
        raise InvalidInput("give either flowId or template (not both)", field="flowId")
    segment = data.get("segment")
    if segment is None:
        raise InvalidInput("segment: give the audience, e.g. {'tag': 'vip'} or {'all': []} for everyone")
    validate_segment(segment, "segment")
    categories = await _categories(services, workspace_id)
    if flow_id is not None:
        flow = await services.flows.get(workspace_id, flow_id)
        if flow is None or flow.get("hidden"):
            raise NotFound(f"flow {flow_id} not found", field="flowId")
        if flow.get("status") != "active" or not flow.get("active_version"):
            raise InvalidInput(f"flow {flow['name']!r} is {flow['status']}: publish it first", field="flowId")
        version = await services.flows.get_version(flow_id, flow["active_version"])
        assert version is not None
        definition = parse_flow(version["definition"])
        name = data.get("name") or flow["name"]
    else:
        assert template is not None
        if not template.get("name"):
            raise InvalidInput("template.name: which template to send", field="template.name")
        language = template.get("language") or "es"
        found = await services.templates.get_by_name(workspace_id, template["name"], language)
        if not found:
            raise NotFound(f"template {template['name']!r} ({language}) not found", field="template.name")
        status = found[0]["status"]
        on_whatsapp = await services.channels.for_workspace(workspace_id) is not None
        if status in UNUSABLE_TEMPLATE or (on_whatsapp and status != "APPROVED"):
            raise InvalidInput(
                f"template {template['name']!r} is {status}; only an approved template can be broadcast",
                field="template.name",
            )
        definition = parse_flow(_template_flow("broadcast", template))
        name = data.get("name") or template["name"]
    require = data.get("require_opt_in")
    marketing = _uses_marketing(definition, categories)
    if require is False and marketing:
        raise InvalidInput("requireOptIn: marketing templates are only sent to opted-in contacts")
    now = services.clock.now()
    start_at = as_utc(data["start_at"]) if data.get("start_at") else now
    return Draft(
        name=checked_name(str(name), field="name", limit=MAX_BROADCAST_NAME, what="a broadcast name"),
        segment=segment,
        start_at=max(start_at, now),
        require_opt_in=require is not False,
        flow_id=flow_id,
        template=template,
        definition=definition,
        categories=categories,
        channel_id=await chosen_channel_id(services.channels, workspace_id, data.get("channel_id")),
    )


async def create_broadcast(
    services: BroadcastServices, workspace_id: str, data: dict[str, Any]
) -> dict[str, Any]:
    draft = await _check(services, workspace_id, data)
    now = services.clock.now()
    broadcast_id = new_id("bc")
    flow_id = draft.flow_id
    if flow_id is None:
        flow_id = await _hidden_flow(services, workspace_id, broadcast_id, draft, now)
    document = {
        "_id": broadcast_id,
        "workspace_id": workspace_id,
        "name": draft.name,
        "kind": "flow" if draft.flow_id else "template",
        "flow_id": flow_id,
        "template": draft.template,
        "channel_id": draft.channel_id,
        "segment": draft.segment,
        "require_opt_in": draft.require_opt_in,
        "status": "scheduled",
        "start_at": draft.start_at,
        "created_at": now,
        "started_at": None,
        "finished_at": None,
        "frozen": False,
        "total": None,
        "error": None,
        "waiting_for_capacity_until": None,
        "lease_owner": None,
        "lease_until": None,
    }
    await services.broadcasts.insert(document)
    services.wake_broadcasts()
    return document


async def _hidden_flow(
    services: BroadcastServices, workspace_id: str, broadcast_id: str, draft: Draft, now: datetime
) -> str:
    assert draft.template is not None
    flow_id = f"flow_{broadcast_id}"
    definition = _template_flow(f"Broadcast {broadcast_id}", draft.template)
    await services.flows.insert(
        {
            "_id": flow_id,
            "workspace_id": workspace_id,
            "name": definition["name"],
            "status": "active",
            "hidden": True,
            "broadcast_id": broadcast_id,
            "draft": definition,
            "active_version": 1,
            "version_counter": 1,
            "created_at": now,
            "updated_at": now,
        }
    )
    await services.flows.insert_version(
        {
            "_id": f"{flow_id}:1",
            "flow_id": flow_id,
            "workspace_id": workspace_id,
            "version": 1,
            "definition": definition,
            "published_at": now,
        }
    )
    return flow_id


async def require_broadcast(
    services: BroadcastServices, workspace_id: str, broadcast_id: str
) -> dict[str, Any]:
    found = await services.broadcasts.get(workspace_id, broadcast_id)
    if found is None:
        raise NotFound(f"broadcast {broadcast_id} not found")
    return found


async def _move(
    services: BroadcastServices,
    workspace_id: str,
    broadcast_id: str,
    allowed: tuple[str, ...],
    changes: dict[str, Any],
) -> dict[str, Any]:
    current = await require_broadcast(services, workspace_id, broadcast_id)
    updated = await services.broadcasts.transition(workspace_id, broadcast_id, allowed, changes)
    if updated is None:
        raise Conflict(
            f"broadcast {broadcast_id} is {current['status']}; this needs it {' or '.join(allowed)}",
            status=current["status"],
        )
    await services.pubsub.publish(broadcast_topic(workspace_id, broadcast_id), {"id": broadcast_id})
    return updated


async def pause_broadcast(
    services: BroadcastServices, workspace_id: str, broadcast_id: str
) -> dict[str, Any]:
    return await _move(
        services,
        workspace_id,
        broadcast_id,
        ("scheduled", "running"),
        {"status": "paused", "paused_at": now(services)},
    )


async def resume_broadcast(
    services: BroadcastServices, workspace_id: str, broadcast_id: str
) -> dict[str, Any]:
    current = await require_broadcast(services, workspace_id, broadcast_id)
    target = "running" if current.get("started_at") else "scheduled"
    updated = await _move(
        services, workspace_id, broadcast_id, ("paused",), {"status": target, "paused_at": None}
    )
    services.wake_broadcasts()
    return updated


async def cancel_broadcast(
    services: BroadcastServices, workspace_id: str, broadcast_id: str
) -> dict[str, Any]:
    moment = now(services)
    updated = await _move(
        services,
        workspace_id,
        broadcast_id,
        ("scheduled", "running", "paused"),
        {"status": "cancelled", "finished_at": moment},
    )
    await services.recipients.cancel_queued(broadcast_id, moment)
    return updated


def now(services: BroadcastDraftServices) -> datetime:
    return services.clock.now()


async def make_plan(services: BroadcastPlanServices, broadcast: dict[str, Any]) -> Plan:
    """The flow version and rules a running broadcast applies (re-made after a restart)."""
    workspace_id = broadcast["workspace_id"]
    flow = await services.flows.get(workspace_id, broadcast["flow_id"])
    if flow is None or flow.get("status") != "active" or not flow.get("active_version"):
        raise InvalidInput("the broadcast's flow is no longer active; publish it and resume")
    version = flow["active_version"]
    compiled = await services.flow_cache.get(flow["_id"], version)
    categories = await _categories(services, workspace_id)
    plan = Plan(
        flow_id=flow["_id"],
        version=version,
        compiled=compiled,
        needs_opt_in=broadcast.get("require_opt_in", True)
        or _uses_marketing(compiled.definition, categories),
        window_sensitive=window_sensitive(compiled.definition),
    )
    plan.marketing_first = marketing_first(plan, categories)
    return plan


async def sending_channel(
    services: SendingChannelServices, workspace_id: str, broadcast: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The channel a broadcast sends through: its own (a broadcast may name one), else the
    workspace's WhatsApp channel; None for the sandbox."""
    channel_id = (broadcast or {}).get("channel_id")
    channel = await services.channel.by_id(channel_id) if channel_id else None
    if channel is None or channel.get("workspace_id") != workspace_id:
        channel = await services.channel.channel_for(workspace_id)
    return channel


async def messaging_portfolio(
    services: SendingChannelServices, workspace_id: str, broadcast: dict[str, Any] | None = None
) -> str | None:
    """The business portfolio a broadcast sends through (its channel's); None is the workspace's own."""
    return portfolio_of(await sending_channel(services, workspace_id, broadcast))


@dataclass
class Counts:
    """Progress of a broadcast; ``sent`` includes delivered and read (each recipient counted once)."""

    total: int = 0
    queued: int = 0
    started: int = 0
    sent: int = 0
    delivered: int = 0
    read: int = 0
    failed: int = 0
    skipped: int = 0
    cancelled: int = 0
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    # Past the send policy (recipient ``delivery.state``): HELD (quiet hours), RETRYING (Meta's
    # "later"), REFUSED (e.g. MARKETING_TO_US), then SENT or FAILED once it went or gave up.
    delivery: dict[str, int] = field(default_factory=dict)


async def progress(services: BroadcastServices, broadcast: dict[str, Any]) -> Counts:
    counts = Counts()
    broadcast_id = broadcast["_id"]
    for row in await services.recipients.state_counts(broadcast_id):
        state, reason, n = row["_id"].get("state"), row["_id"].get("reason"), row["n"]
        delivery = row["_id"].get("delivery")
        if delivery:
            counts.delivery[delivery] = counts.delivery.get(delivery, 0) + n
        counts.total += n
        if state == "queued":
            counts.queued += n
        elif state == "started":
            counts.started += n
        elif state == "skipped":
            counts.skipped += n
            counts.skipped_by_reason[reason or "UNKNOWN"] = counts.skipped_by_reason.get(reason, 0) + n
        elif state == "failed":
            counts.failed += n
        elif state == "cancelled":
            counts.cancelled += n
    best: dict[str, int] = {}
    failed: set[str] = set()
    for row in await services.broadcasts.message_statuses(broadcast_id):
        # per person: the contact (messages written before identities name only the phone)
        phone = row["_id"].get("contact_id") or row["_id"].get("phone")
        status = row["_id"].get("status")
        if status == "failed":
            failed.add(phone)
        best[phone] = max(best.get(phone, 0), STATUS_RANK.get(status, 0))
    counts.sent = sum(1 for rank in best.values() if rank >= 1)
    counts.delivered = sum(1 for rank in best.values() if rank >= 2)
    counts.read = sum(1 for rank in best.values() if rank >= 3)
    counts.failed += sum(1 for phone in failed if best.get(phone, 0) == 0)
    return counts


@dataclass
class Estimate:
    recipients: int = 0
    eligible: int = 0
    outside_window: int = 0
    capacity_left: int | None = None
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    cost: float = 0.0
    currency: str | None = None
    unpriced: int = 0  # eligible recipients whose country is not on the rate card
    category: str | None = None


async def estimate_broadcast(
    services: BroadcastEstimateServices, workspace_id: str, data: dict[str, Any]
) -> Estimate:
    """Who would be messaged, skipped (and why), and the cost, if the broadcast started now.

    The cost is the rate card's price of the first template each eligible recipient would get
    (free inside the window where the card says so); a flow that starts with a simple message
    costs nothing to start.
    """
    draft = await _check(services, workspace_id, data)
    definition = draft.definition
    plan = Plan(
        flow_id="estimate",
        version=0,
        compiled=compile_flow(definition),
        needs_opt_in=draft.require_opt_in or _uses_marketing(definition, draft.categories),
        window_sensitive=window_sensitive(definition),
    )
    plan.marketing_first = marketing_first(plan, draft.categories)
    moment = now(services)
    zone = await services.caches.timezone_of(workspace_id)
    judge = Judge(plan, moment, zone, matches, await services.caches.fields_of(workspace_id))
    first = plan.first_template()
    category = draft.categories.get(first.template) if first is not None else None
    result = Estimate(category=category)
    async for contact in services.audience.scan(workspace_id, to_mongo_filter(draft.segment, moment, zone)):
        result.recipients += 1
        reason = judge.skip_reason(contact)
        if reason is not None:
            result.skipped_by_reason[reason] = result.skipped_by_reason.get(reason, 0) + 1
            continue
        result.eligible += 1
        is_open = window_open(contact.get("last_inbound_at"), moment)
        if not is_open:
            result.outside_window += 1
        if category is not None:
            price = estimate_cost(category, str(contact.get("phone") or ""), is_open)
            result.currency = price["currency"]
            if price["amount"] is None:
                result.unpriced += 1
            else:
                result.cost += price["amount"]
    portfolio = await messaging_portfolio(services, workspace_id, data)
    limit = tier_limit(await services.limits.tier(workspace_id, portfolio))
    if limit is not None:
        used = await services.limits.used_since(workspace_id, moment - DAY, portfolio)
        result.capacity_left = max(0, limit - used)
    return result


def checked_business_id(business_id: str | None) -> str | None:
    """A Meta business (portfolio) id as given, or ``InvalidInput``; None/blank: the workspace's own."""
    text = str(business_id or "").strip()
    if not text:
        return None
    if not _BUSINESS_ID.fullmatch(text):
        raise InvalidInput(
            f"businessId {text!r} is not a Meta business id (as WhatsApp Manager shows it)",
            field="businessId",
        )
    return text


async def messaging_tier(
    services: MessagingTierServices, workspace_id: str, business_id: str | None = None
) -> str | None:
    return await services.limits.tier(workspace_id, checked_business_id(business_id))


async def set_messaging_tier(
    services: MessagingTierServices, workspace_id: str, tier: str, business_id: str | None = None
) -> str:
    """The tier Meta shows for a business portfolio (``business_id``), or for the workspace's own
    portfolio (its numbers connected without a business id)."""
    if tier not in TIERS:
        raise InvalidInput(f"tier must be one of {', '.join(TIERS)}", field="tier")
    await services.limits.set_tier(workspace_id, tier, checked_business_id(business_id))
    services.wake_broadcasts()
    return tier
