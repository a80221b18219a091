"""GraphQL surface of broadcasts: create/pause/resume/cancel, estimate, progress (query and live).

Mixed into the root ``Query``/``Mutation``/``Subscription`` in ``schema.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from datetime import datetime
from enum import Enum
from typing import Any

import strawberry
from strawberry.scalars import JSON

from server.errors import InvalidInput, NotFound
from server.graphql.context import TenantInfo
from server.graphql.permissions import ADMIN_ONLY
from server.triggers import broadcasts as ops
from server.triggers.broadcast_rules import DEFAULT_TIER

POLL_SECONDS = 2.0  # statuses (delivered, read) keep arriving after the runner is done


@strawberry.enum
class BroadcastStatus(Enum):
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


@strawberry.enum(
    description="WhatsApp's messaging limit: unique contacts reached outside the window per 24 h"
)
class MessagingTier(Enum):
    TIER_250 = "TIER_250"
    TIER_2K = "TIER_2K"
    TIER_10K = "TIER_10K"
    TIER_100K = "TIER_100K"
    TIER_UNLIMITED = "TIER_UNLIMITED"


@strawberry.type
class ReasonCount:
    reason: str
    count: int


def _reasons(counts: dict[str, int]) -> list[ReasonCount]:
    return [ReasonCount(reason=r, count=n) for r, n in sorted(counts.items())]


@strawberry.type(description="recipients by state; sent includes delivered and read")
class BroadcastCounts:
    total: int
    queued: int
    started: int
    sent: int
    delivered: int
    read: int
    failed: int
    skipped: int
    cancelled: int
    skipped_by_reason: list[ReasonCount]
    held: int = strawberry.field(description="messages waiting for quiet hours to end")
    retrying: int = strawberry.field(
        description="messages Meta answered 'later' (131049 marketing cap, 131048, 131056), "
        "retried hours (131056: seconds) later"
    )
    delivery_by_state: list[ReasonCount] = strawberry.field(
        description="recipients whose message met the send policy, by what became of it: HELD, RETRYING, "
        "REFUSED, SENT (after waiting), FAILED"
    )

    @classmethod
    def of(cls, counts: ops.Counts) -> BroadcastCounts:
        return cls(
            total=counts.total,
            queued=counts.queued,
            started=counts.started,
            sent=counts.sent,
            delivered=counts.delivered,
            read=counts.read,
            failed=counts.failed,
            skipped=counts.skipped,
            cancelled=counts.cancelled,
            skipped_by_reason=_reasons(counts.skipped_by_reason),
            held=counts.delivery.get("HELD", 0),
            retrying=counts.delivery.get("RETRYING", 0),
            delivery_by_state=_reasons(counts.delivery),
        )


@strawberry.type(description="what became of a recipient's message past the send policy")
class RecipientDelivery:
    state: str = strawberry.field(description="HELD, RETRYING, REFUSED, SENT or FAILED")
    reason: str | None = strawberry.field(description="QUIET_HOURS, Meta's code (131049...) or the refusal")
    why: str | None
    until: datetime | None = strawberry.field(description="when a held or retrying message goes next")
    attempt: int | None = strawberry.field(description="the retry it is waiting for (1 = the first)")

    @classmethod
    def of(cls, doc: dict[str, Any]) -> RecipientDelivery:
        attempt = doc.get("attempt")
        return cls(
            state=str(doc.get("state")),
            reason=doc.get("reason"),
            why=doc.get("why"),
            until=doc.get("until"),
            attempt=int(attempt) if attempt is not None else None,
        )


@strawberry.type
class BroadcastRecipient:
    phone: str
    state: str = strawberry.field(description="queued, started, skipped, failed or cancelled")
    reason: str | None = strawberry.field(description="why it was skipped or failed to start")
    run_id: strawberry.ID | None
    delivery: RecipientDelivery | None

    @classmethod
    def of(cls, doc: dict[str, Any]) -> BroadcastRecipient:
        delivery = doc.get("delivery")
        return cls(
            phone=doc["phone"],
            state=doc["state"],
            reason=doc.get("reason"),
            run_id=strawberry.ID(doc["run_id"]) if doc.get("run_id") else None,
            delivery=RecipientDelivery.of(delivery) if delivery else None,
        )


MAX_RECIPIENTS_PAGE = 500


@strawberry.type
class Broadcast:
    doc: strawberry.Private[dict[str, Any]]
    known: strawberry.Private[ops.Counts | None] = None

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.doc["_id"])

    @strawberry.field
    def name(self) -> str:
        return self.doc["name"]

    @strawberry.field
    def status(self) -> BroadcastStatus:
        return BroadcastStatus(self.doc["status"])

    @strawberry.field(description="flow or template")
    def kind(self) -> str:
        return self.doc["kind"]

    @strawberry.field(description="the flow sent (for a template broadcast: its hidden one-node flow)")
    def flow_id(self) -> strawberry.ID:
        return strawberry.ID(self.doc["flow_id"])

    @strawberry.field
    def template(self) -> JSON | None:
        return self.doc.get("template")

    @strawberry.field(description="the number it sends from; null: the flow's channel, else the default")
    def channel_id(self) -> strawberry.ID | None:
        return self.doc.get("channel_id")

    @strawberry.field
    def segment(self) -> JSON:
        return self.doc["segment"]

    @strawberry.field
    def require_opt_in(self) -> bool:
        return bool(self.doc.get("require_opt_in", True))

    @strawberry.field
    def start_at(self) -> datetime:
        return self.doc["start_at"]

    @strawberry.field
    def created_at(self) -> datetime:
        return self.doc["created_at"]

    @strawberry.field
    def started_at(self) -> datetime | None:
        return self.doc.get("started_at")

    @strawberry.field
    def finished_at(self) -> datetime | None:
        return self.doc.get("finished_at")

    @strawberry.field(description="audience size, known once it is frozen at start")
    def total(self) -> int | None:
        return self.doc.get("total")

    @strawberry.field
    def error(self) -> str | None:
        return self.doc.get("error")

    @strawberry.field(description="set while recipients wait for the messaging limit to free up")
    def waiting_for_capacity_until(self) -> datetime | None:
        return self.doc.get("waiting_for_capacity_until")

    @strawberry.field
    async def counts(self, info: TenantInfo) -> BroadcastCounts:
        counts = self.known or await ops.progress(info.context.services, self.doc)
        return BroadcastCounts.of(counts)

    @strawberry.field(
        description="recipients in order, optionally by state and/or delivery state (HELD, RETRYING, "
        "REFUSED, SENT, FAILED); after: the last phone seen"
    )
    async def recipients(
        self,
        info: TenantInfo,
        state: str | None = None,
        delivery: str | None = None,
        first: int = 100,
        after: str | None = None,
    ) -> list[BroadcastRecipient]:
        if not 1 <= first <= MAX_RECIPIENTS_PAGE:
            raise InvalidInput(f"first must be between 1 and {MAX_RECIPIENTS_PAGE}", field="first")
        repo = info.context.services.recipients
        start = f"{self.doc['_id']}:{after}" if after else ""
        found = await repo.page(
            self.doc["_id"], [state] if state else None, [delivery] if delivery else None, start, first
        )
        return [BroadcastRecipient.of(d) for d in found]


@strawberry.input
class BroadcastTemplateInput:
    name: str
    language: str = "es"
    params: JSON | None = None


@strawberry.input(
    description="give flowId or template; segment selects the audience ({'all': []} = everyone)"
)
class BroadcastInput:
    segment: JSON
    flow_id: strawberry.ID | None = None
    template: BroadcastTemplateInput | None = None
    name: str | None = None
    start_at: datetime | None = None
    require_opt_in: bool = True
    channel_id: strawberry.ID | None = strawberry.field(
        default=None, description="the number it sends from (null: the flow's channel, else the default)"
    )

    def data(self) -> dict[str, Any]:
        template: dict[str, Any] | None = None
        if self.template is not None:
            template = {"name": self.template.name, "language": self.template.language}
            if self.template.params:
                template["params"] = self.template.params
        return {
            "segment": self.segment,
            "flow_id": str(self.flow_id) if self.flow_id is not None else None,
            "template": template,
            "name": self.name,
            "start_at": self.start_at,
            "require_opt_in": self.require_opt_in,
            "channel_id": str(self.channel_id) if self.channel_id is not None else None,
        }


@strawberry.type
class BroadcastEstimate:
    recipients: int
    eligible: int
    outside_window: int = strawberry.field(description="eligible contacts whose 24-hour window is closed")
    capacity_left: int | None = strawberry.field(description="messaging-limit room now (null: unlimited)")
    skipped_by_reason: list[ReasonCount]
    cost: float
    currency: str | None
    unpriced: int = strawberry.field(description="eligible contacts whose country the rate card lacks")
    category: str | None = strawberry.field(description="category of the first template sent")


@strawberry.type
class BroadcastQuery:
    @strawberry.field(permission_classes=ADMIN_ONLY, description="newest first")
    async def broadcasts(self, info: TenantInfo) -> list[Broadcast]:
        ctx = info.context
        return [Broadcast(doc=d) for d in await ctx.services.broadcasts.list(ctx.workspace())]

    @strawberry.field(permission_classes=ADMIN_ONLY)
    async def broadcast(self, info: TenantInfo, id: strawberry.ID) -> Broadcast | None:
        ctx = info.context
        found = await ctx.services.broadcasts.get(ctx.workspace(), str(id))
        return Broadcast(doc=found) if found else None

    @strawberry.field(
        permission_classes=ADMIN_ONLY, description="who would get it and what it costs, if sent now"
    )
    async def estimate_broadcast(self, info: TenantInfo, input: BroadcastInput) -> BroadcastEstimate:
        ctx = info.context
        found = await ops.estimate_broadcast(ctx.services, ctx.workspace(), input.data())
        return BroadcastEstimate(
            recipients=found.recipients,
            eligible=found.eligible,
            outside_window=found.outside_window,
            capacity_left=found.capacity_left,
            skipped_by_reason=_reasons(found.skipped_by_reason),
            cost=round(found.cost, 6),
            currency=found.currency,
            unpriced=found.unpriced,
            category=found.category,
        )

    @strawberry.field(
        permission_classes=ADMIN_ONLY,
        description="a business portfolio's tier (businessId, as its channels name it), or the "
        "workspace's own portfolio's (numbers connected without a business id)",
    )
    async def messaging_limit(self, info: TenantInfo, business_id: str | None = None) -> MessagingTier:
        ctx = info.context
        tier = await ops.messaging_tier(ctx.services, ctx.workspace(), business_id)
        return MessagingTier(tier or DEFAULT_TIER)


@strawberry.type
class BroadcastMutation:
    @strawberry.mutation(permission_classes=ADMIN_ONLY, description="starts at startAt (now when omitted)")
    async def create_broadcast(self, info: TenantInfo, input: BroadcastInput) -> Broadcast:
        ctx = info.context
        return Broadcast(doc=await ops.create_broadcast(ctx.services, ctx.admin_workspace(), input.data()))

    @strawberry.mutation(permission_classes=ADMIN_ONLY)
    async def pause_broadcast(self, info: TenantInfo, id: strawberry.ID) -> Broadcast:
        ctx = info.context
        return Broadcast(doc=await ops.pause_broadcast(ctx.services, ctx.admin_workspace(), str(id)))

    @strawberry.mutation(permission_classes=ADMIN_ONLY)
    async def resume_broadcast(self, info: TenantInfo, id: strawberry.ID) -> Broadcast:
        ctx = info.context
        return Broadcast(doc=await ops.resume_broadcast(ctx.services, ctx.admin_workspace(), str(id)))

    @strawberry.mutation(permission_classes=ADMIN_ONLY, description="recipients not yet started are not sent")
    async def cancel_broadcast(self, info: TenantInfo, id: strawberry.ID) -> Broadcast:
        ctx = info.context
        return Broadcast(doc=await ops.cancel_broadcast(ctx.services, ctx.admin_workspace(), str(id)))

    @strawberry.mutation(
        permission_classes=ADMIN_ONLY,
        description="the business portfolio's tier as Meta shows it (WhatsApp Manager), shared by all its "
        "numbers; without businessId, the workspace's own portfolio",
    )
    async def set_messaging_limit(
        self, info: TenantInfo, tier: MessagingTier, business_id: str | None = None
    ) -> MessagingTier:
        ctx = info.context
        found = await ops.set_messaging_tier(ctx.services, ctx.admin_workspace(), tier.value, business_id)
        return MessagingTier(found)


@strawberry.type
class BroadcastSubscription:
    @strawberry.subscription(
        permission_classes=ADMIN_ONLY,
        description="the broadcast at once, then whenever its status or counts change",
    )
    async def broadcast_progress(
        self, info: TenantInfo, id: strawberry.ID
    ) -> AsyncGenerator[Broadcast, None]:
        ctx = info.context
        services, workspace_id = ctx.services, ctx.workspace()
        updates = services.pubsub.subscribe(ops.broadcast_topic(workspace_id, str(id)))
        try:
            last: tuple[object, ...] | None = None
            while True:
                found = await services.broadcasts.get(workspace_id, str(id))
                if found is None:
                    raise NotFound(f"broadcast {id} not found")
                counts = await ops.progress(services, found)
                seen = (found["status"], found.get("total"), found.get("waiting_for_capacity_until"), counts)
                if seen != last:
                    last = seen
                    yield Broadcast(doc=found, known=counts)
                try:
                    async with asyncio.timeout(POLL_SECONDS):
                        await updates.__anext__()
                except TimeoutError:
                    pass
                except StopAsyncIteration:  # the server is stopping
                    return
        finally:
            await updates.aclose()
