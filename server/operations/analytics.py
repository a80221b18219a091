"""Flow analytics: how a flow performs, node by node, read from pre-aggregated counters.

Counters are written after each committed turn (``server/machines/flow_counts.py`` says which,
``server/store/flow_counters.py`` how), so reading them costs the same for 10 runs or 1M: the
``all`` bucket of each version, or the day and hour buckets of a range. This module turns the
generic counters into what a dashboard shows: runs started and how they ended, and per node
entries, waits, replies, buttons, branches, failures and the delivery funnel of its messages.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from server.clock import Clock, as_utc
from server.errors import InvalidInput, NotFound
from server.machines.definition import parse_flow
from server.machines.statuses import SEND_ACTIONS
from server.store.flow_counters import FlowCounterRepository, ceil_hour, floor_hour
from server.store.flows import FlowRepository

Name = tuple[str, ...]
FUNNEL = ("sent", "delivered", "read", "failed")


class AnalyticsServices(Protocol):
    """What flow analytics reads: flows and their node counters."""

    @property
    def clock(self) -> Clock: ...

    @property
    def flow_counters(self) -> FlowCounterRepository: ...

    @property
    def flows(self) -> FlowRepository: ...


def _by_key(counters: Counter[Name], kind: str) -> list[tuple[str, int]]:
    """``kind/<key>`` counters as (key, count), most first then by key."""
    found = [(name[1], n) for name, n in counters.items() if len(name) == 2 and name[0] == kind and n]
    return sorted(found, key=lambda pair: (-pair[1], pair[0]))


def _sum(counters: Counter[Name], *prefix: str) -> int:
    return sum(n for name, n in counters.items() if name[: len(prefix)] == prefix)


@dataclass
class MessageFunnel:
    """The node's messages: queued by runs, then what the provider reported for them."""

    queued: int
    sent: int
    delivered: int
    read: int
    failed: int
    errors: list[tuple[str, int]]


@dataclass
class NodeStats:
    node_id: str
    counters: Counter[Name] = field(default_factory=Counter)

    @property
    def entered(self) -> int:
        return self.counters[("entered",)]

    @property
    def waited(self) -> int:
        return self.counters[("waited",)]

    @property
    def replied(self) -> int:
        return _sum(self.counters, "step", "reply")

    @property
    def no_reply(self) -> int:
        return _sum(self.counters, "step", "no_reply")

    @property
    def buttons(self) -> list[tuple[str, int]]:
        return _by_key(self.counters, "button")

    @property
    def branches(self) -> list[tuple[str, int]]:
        return _by_key(self.counters, "branch")

    @property
    def failures(self) -> list[tuple[str, int]]:
        """Runs that failed at this node, by reason code (``WINDOW_CLOSED``, ``SEND_FAILED:131026``)."""
        found = [(name[2], n) for name, n in self.counters.items() if name[:2] == ("ended", "failed") and n]
        return sorted(found, key=lambda pair: (-pair[1], pair[0]))

    @property
    def messages(self) -> MessageFunnel:
        counters = self.counters
        queued = sum(counters[("step", action, "queued")] for action in SEND_ACTIONS)
        statuses = {status: counters[("step", "message_status", status)] for status in FUNNEL}
        return MessageFunnel(queued=queued, errors=_by_key(counters, "error"), **statuses)

    @property
    def steps(self) -> list[tuple[str, str, int]]:
        found = [
            (name[1], name[2], n) for name, n in self.counters.items() if len(name) == 3 and name[0] == "step"
        ]
        return sorted(found, key=lambda row: (row[0], row[1]))


@dataclass
class FlowStats:
    flow_id: str
    version: int | None
    since: datetime | None
    until: datetime | None
    runs: Counter[Name]
    nodes: list[NodeStats]

    @property
    def started(self) -> int:
        return self.runs[("step", "started", "ok")]

    @property
    def not_started(self) -> int:
        return _sum(self.runs, "step", "not_started")

    def ended(self, status: str) -> int:
        return _sum(self.runs, "ended", status)

    @property
    def endings(self) -> list[tuple[str, str, int]]:
        """(status, reason, count) of every way runs ended, most first."""
        found = [(name[1], name[2], n) for name, n in self.runs.items() if name[0] == "ended" and n]
        return sorted(found, key=lambda row: (-row[2], row[0], row[1]))


async def _node_order(services: AnalyticsServices, flow: dict[str, Any], version: int | None) -> list[str]:
    """The node ids of the version asked for (else the active one, else the draft), in order."""
    definition: Any = flow.get("draft")
    wanted = version or flow.get("active_version")
    if wanted:
        stored = await services.flows.get_version(flow["_id"], wanted)
        if stored is None and version is not None:
            raise NotFound(f"flow {flow['_id']} has no version {version}", field="version")
        if stored is not None:
            definition = stored["definition"]
    try:
        return [node.id for node in parse_flow(definition).nodes]
    except Exception:  # a draft that does not parse: the counters still name their nodes
        return []


async def flow_analytics(
    services: AnalyticsServices,
    workspace_id: str,
    flow_id: str,
    version: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> FlowStats:
    """Counters of one flow (a version, or all of them) committed in ``[since, until)``, rounded
    out to whole hours; without either end, since the first run or until now."""
    flow = await services.flows.get(workspace_id, flow_id)
    if flow is None:
        raise NotFound(f"flow {flow_id} not found", field="flowId")
    if version is not None and version < 1:
        raise InvalidInput("version must be 1 or more", field="version")
    since = as_utc(since) if since is not None else None
    until = as_utc(until) if until is not None else None
    if since is not None and until is not None and until < since:
        raise InvalidInput("to must not be before from", field="to")
    totals = await services.flow_counters.totals(
        workspace_id, flow_id, version, since, until, services.clock.now()
    )
    order = await _node_order(services, flow, version)
    known = set(order)
    order += sorted(node for node in totals.nodes if node not in known)
    return FlowStats(
        flow_id=flow_id,
        version=version,
        since=floor_hour(since) if since is not None else None,
        until=ceil_hour(until) if until is not None else None,
        runs=totals.runs,
        nodes=[NodeStats(node, Counter(totals.nodes.get(node) or {})) for node in order],
    )
