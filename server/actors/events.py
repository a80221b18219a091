"""Events a contact actor handles; each has an id so applying it twice has no effect."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class StartFlow:
    event_id: str
    flow_id: str
    trigger: dict[str, Any] = field(default_factory=dict)
    source: str = "api"


@dataclass(frozen=True)
class InboundMessage:
    """What the customer said; ``event_id`` is the provider's message id (the dedupe key)."""

    event_id: str
    at: datetime
    text: str | None = None
    button_id: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class TimerFired:
    event_id: str  # the timer id


@dataclass(frozen=True)
class StopRun:
    event_id: str
    run_id: str
    reason: str = "stopped"


@dataclass(frozen=True)
class Redeliver:
    """Send whatever is still in the contact's outbox (recovery after a failed or lost send)."""

    event_id: str


@dataclass(frozen=True)
class MessageStatus:
    """What became of an outbound message (provider status webhook, or a permanent send failure).

    ``event_id`` is unique per (message, status) so a repeated webhook is applied once; statuses
    may arrive out of order, and the contact keeps the furthest one (read > delivered > sent).
    """

    event_id: str
    message_id: str
    status: str  # sent | delivered | read | failed
    at: datetime
    error_code: str | None = None
    error: str | None = None
    pricing: dict[str, Any] | None = None


@dataclass
class TurnResult:
    """What a turn produced, for the caller that asked (API mutations wait for it)."""

    contact: dict[str, Any]
    run: dict[str, Any] | None = None
    duplicate: bool = False
    changed: bool = True


@dataclass(frozen=True)
class EndFlowRuns:
    """End this contact's runs of ``flow_id`` on versions older than ``below_version`` (publish exit)."""

    event_id: str
    flow_id: str
    below_version: int
    reason: str = "version_replaced"


Event = StartFlow | InboundMessage | TimerFired | StopRun | Redeliver | EndFlowRuns | MessageStatus
