"""``flowAnalytics`` and ``flowAnalyticsUpdated``: how a flow performs, from pre-aggregated counters.

See ``docs/analytics.md``. Reading costs a handful of small documents whatever the number of
runs, so a dashboard may poll every few seconds, or subscribe and get the totals at once and
again whenever a committed turn changed them.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Annotated

import strawberry

from server.graphql.context import TenantInfo
from server.graphql.permissions import ADMIN_ONLY
from server.graphql.runs import RunStatus
from server.operations import analytics as ops
from server.pubsub import analytics_topic


@strawberry.type(description="a count by key: a button id, a branch name, a failure or error code")
class KeyCount:
    key: str
    count: int


@strawberry.type(description="steps recorded at a node with this action and outcome")
class StepCount:
    action: str
    outcome: str
    count: int


@strawberry.type(description="what became of the messages a node sent")
class MessageFunnel:
    queued: int = strawberry.field(description="messages runs queued at this node")
    sent: int = strawberry.field(description="reported sent by the provider")
    delivered: int = strawberry.field(description="reported delivered to the phone")
    read: int = strawberry.field(description="reported read")
    failed: int = strawberry.field(description="refused or failed for good")
    errors: list[KeyCount] = strawberry.field(description="failed messages by provider error code")


@strawberry.type(description="one node's counters")
class NodeAnalytics:
    stats: strawberry.Private[ops.NodeStats]

    @strawberry.field
    def node_id(self) -> str:
        return self.stats.node_id

    @strawberry.field(
        description="times runs reached the node (asking again after an answer that did not fit is not one)"
    )
    def entered(self) -> int:
        return self.stats.entered

    @strawberry.field(description="times runs stopped here to wait for the customer or a timer")
    def waited(self) -> int:
        return self.stats.waited

    @strawberry.field(description="text replies that took on_reply or on_other")
    def replied(self) -> int:
        return self.stats.replied

    @strawberry.field(description="waits that ended by the no-reply timer")
    def no_reply(self) -> int:
        return self.stats.no_reply

    @strawberry.field(description="buttons pressed, by button id")
    def buttons(self) -> list[KeyCount]:
        return [KeyCount(key=k, count=n) for k, n in self.stats.buttons]

    @strawberry.field(description="branches taken, by name (condition branches, split variants)")
    def branches(self) -> list[KeyCount]:
        return [KeyCount(key=k, count=n) for k, n in self.stats.branches]

    @strawberry.field(description="runs that failed at this node")
    def failed(self) -> int:
        return sum(n for _, n in self.stats.failures)

    @strawberry.field(description="runs that failed at this node, by reason code")
    def failures(self) -> list[KeyCount]:
        return [KeyCount(key=k, count=n) for k, n in self.stats.failures]

    @strawberry.field(description="the delivery funnel of the node's messages")
    def messages(self) -> MessageFunnel:
        funnel = self.stats.messages
        return MessageFunnel(
            queued=funnel.queued,
            sent=funnel.sent,
            delivered=funnel.delivered,
            read=funnel.read,
            failed=funnel.failed,
            errors=[KeyCount(key=k, count=n) for k, n in funnel.errors],
        )

    @strawberry.field(description="every step recorded at the node, by action and outcome")
    def steps(self) -> list[StepCount]:
        return [StepCount(action=a, outcome=o, count=n) for a, o, n in self.stats.steps]


@strawberry.type(description="runs that ended with this status and reason")
class RunEnding:
    status: RunStatus
    reason: str
    count: int


@strawberry.type(description="a flow's counters over a time range, per node and for its runs")
class FlowAnalytics:
    stats: strawberry.Private[ops.FlowStats]

    @strawberry.field
    def flow_id(self) -> strawberry.ID:
        return strawberry.ID(self.stats.flow_id)

    @strawberry.field(description="the version counted; null: every version")
    def version(self) -> int | None:
        return self.stats.version

    @strawberry.field(
        name="from", description="start of the range, rounded down to the hour; null: the beginning"
    )
    def since(self) -> datetime | None:
        return self.stats.since

    @strawberry.field(name="to", description="end of the range (excluded), rounded up to the hour; null: now")
    def until(self) -> datetime | None:
        return self.stats.until

    @strawberry.field(description="runs started")
    def runs_started(self) -> int:
        return self.stats.started

    @strawberry.field(description="runs not started because an agent owned the conversation")
    def runs_not_started(self) -> int:
        return self.stats.not_started

    @strawberry.field
    def runs_completed(self) -> int:
        return self.stats.ended("completed")

    @strawberry.field
    def runs_failed(self) -> int:
        return self.stats.ended("failed")

    @strawberry.field
    def runs_cancelled(self) -> int:
        return self.stats.ended("cancelled")

    @strawberry.field(description="runs ended, by status and reason")
    def endings(self) -> list[RunEnding]:
        return [
            RunEnding(status=RunStatus(status), reason=reason, count=n)
            for status, reason, n in self.stats.endings
            if status in RunStatus._value2member_map_
        ]

    @strawberry.field(description="every node of the version (else the active one), then any other counted")
    def nodes(self) -> list[NodeAnalytics]:
        return [NodeAnalytics(stats=node) for node in self.stats.nodes]


def _summary(stats: ops.FlowStats) -> tuple[object, ...]:
    return (
        tuple(sorted(stats.runs.items())),
        tuple((n.node_id, tuple(sorted(n.counters.items()))) for n in stats.nodes),
    )


@strawberry.type
class AnalyticsQuery:
    @strawberry.field(
        permission_classes=ADMIN_ONLY,
        description="per node counts and delivery funnel of a flow (a version, or all), in a time range",
    )
    async def flow_analytics(
        self,
        info: TenantInfo,
        flow_id: strawberry.ID,
        version: int | None = None,
        since: Annotated[datetime | None, strawberry.argument(name="from")] = None,
        until: Annotated[datetime | None, strawberry.argument(name="to")] = None,
    ) -> FlowAnalytics:
        ctx = info.context
        stats = await ops.flow_analytics(ctx.services, ctx.workspace(), str(flow_id), version, since, until)
        return FlowAnalytics(stats=stats)


@strawberry.type
class AnalyticsSubscription:
    @strawberry.subscription(
        permission_classes=ADMIN_ONLY,
        description="the flow's analytics (all time) at once, then again when committed turns change them",
    )
    async def flow_analytics_updated(
        self, info: TenantInfo, flow_id: strawberry.ID, version: int | None = None
    ) -> AsyncGenerator[FlowAnalytics, None]:
        ctx = info.context
        services, workspace_id = ctx.services, ctx.workspace()
        updates = services.pubsub.subscribe(analytics_topic(workspace_id, str(flow_id)))
        try:
            last: object = None
            while True:
                stats = await ops.flow_analytics(services, workspace_id, str(flow_id), version)
                seen = _summary(stats)
                if seen != last:
                    last = seen
                    yield FlowAnalytics(stats=stats)
                try:
                    await updates.__anext__()
                except StopAsyncIteration:  # the server is stopping
                    return
                if not updates.skip_queued():  # news that came meanwhile: one read covers them
                    return
        finally:
            await updates.aclose()
