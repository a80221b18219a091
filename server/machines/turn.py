"""One actor turn over a working copy of the contact document, and the effects it records.

Everything a turn does is recorded here, never performed: steps on the run, timers and outbound
messages on the contact, agent and flow requests on the ``Turn``; the actor commits the contact
in one CAS write and only then performs them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from server.documents import ContactDoc, RunDoc, StepDoc, TimerDoc
from server.identity import address_of
from server.ids import new_id
from server.machines.contact_state import queue_external_sync
from server.machines.regional import FALLBACK_LOCALE, Regional
from server.machines.rendering import TemplateKey, render_message
from server.window import window_open

# Steps kept per run: the first ("started") and the latest; the count dropped between is kept.
MAX_STEPS_KEPT = 200
ACTIVE = ("active", "waiting")

# What a node's behaviour returns besides a trigger to follow.
WAIT = "__wait__"
ENDED = "__ended__"
MOVED = "__moved__"  # the node moved the run itself (re-asking a question): nothing to follow

# Reasons a run ends or a step fails with.
CONTACT_WITH_AGENT = "CONTACT_WITH_AGENT"
INVALID_VALUE = "INVALID_VALUE"
SPIN_LOOP = "SPIN_LOOP"


@dataclass
class ConnectRequest:
    """A ``connect_flow`` node asked to start another flow once this turn's machine work is done."""

    flow: str
    from_run: str
    trigger: dict[str, Any]


@dataclass
class AssignRequest:
    """An ``assign`` node wants an agent; the actor picks one (store I/O) and calls ``finish_assign``."""

    run_id: str
    node: str
    agent: str | None
    team: str | None
    strategy: str | None  # set explicitly on the node; None means "the team's policy"


class TurnObserver(Protocol):
    """Told what a turn does as it does it: the analytics counters of a commit
    (``server/machines/flow_counts.py``) and the flow simulator's transcript follow turns this way.

    ``entered``: a run reached a node (asking the same question again after an answer that did
    not fit is not a new entry); ``waited``: the run then stopped there for the customer or a timer.
    """

    def step(self, run: RunDoc, step: StepDoc) -> None: ...

    def entered(self, run: RunDoc, node_id: str) -> None: ...

    def waited(self, run: RunDoc, node_id: str) -> None: ...


@dataclass
class Turn:
    """One actor turn: the working contact, the clock reading, and the effects recorded so far."""

    contact: ContactDoc
    now: datetime
    timezone: str = "UTC"
    locale: str = FALLBACK_LOCALE
    changed_runs: set[str] = field(default_factory=set)
    connects: list[ConnectRequest] = field(default_factory=list)
    segment_matcher: Callable[[dict[str, Any], Mapping[str, Any], datetime, str], bool] | None = None
    fields: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    # (template name, language) -> MARKETING | UTILITY | AUTHENTICATION, for the consent check;
    # (name, "") holds the category of any language of that name.
    template_categories: dict[tuple[str, str], str] = field(default_factory=dict)
    # field name -> external link ({"system"/"provider": "klaviyo", "property": ...}).
    field_links: dict[str, dict[str, Any]] = field(default_factory=dict)
    # (template name, language) -> template document, to store what a message looks like.
    templates: dict[TemplateKey, dict[str, Any]] = field(default_factory=dict)
    assigns: list[AssignRequest] = field(default_factory=list)
    # (template name, language) -> the titles of its quick-reply buttons, in order (reply rules).
    template_buttons: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    # (flow id, node id) entered in this turn: entering one again without a wait is a spin.
    entered: set[tuple[str, str]] = field(default_factory=set)
    # run id -> the message node whose question the customer answered in this turn (re-asking).
    answered: dict[str, str] = field(default_factory=dict)
    # run id -> a line added to the next simple message the run sends (a FIXED field's options).
    hints: dict[str, str] = field(default_factory=dict)
    observer: TurnObserver | None = None

    def window_open(self) -> bool:
        return window_open(self.contact.get("last_inbound_at"), self.now)

    @property
    def regional(self) -> Regional:
        """The workspace's time zone and locale: customers' values are read and written in them."""
        return Regional(self.timezone, self.locale)


def record_step(
    turn: Turn,
    run: RunDoc,
    node_id: str | None,
    action: str,
    outcome: str,
    detail: dict[str, Any] | None = None,
    warnings: list[str] | None = None,
) -> StepDoc:
    step: StepDoc = {"node": node_id, "action": action, "at": turn.now, "outcome": outcome}
    if detail:
        step["detail"] = detail
    if warnings:
        step["warnings"] = warnings
    steps = run.setdefault("steps", [])
    steps.append(step)
    if len(steps) > MAX_STEPS_KEPT:
        dropped = len(steps) - MAX_STEPS_KEPT
        del steps[1 : 1 + dropped]  # the first step says how the run started: keep it
        run["steps_dropped"] = int(run.get("steps_dropped") or 0) + dropped
    run["updated_at"] = turn.now
    turn.changed_runs.add(run["id"])
    if turn.observer is not None:
        turn.observer.step(run, step)
    return step


def end_run(turn: Turn, run: RunDoc, status: str, reason: str) -> None:
    if run["status"] not in ACTIVE:
        return
    cancel_run_timers(turn, run)
    run["status"] = status
    run["end_reason"] = reason
    run["ended_at"] = turn.now
    run["waiting_for"] = None
    run["updated_at"] = turn.now
    record_step(turn, run, run.get("node"), "ended", status, detail={"reason": reason})


def add_timer(turn: Turn, run: RunDoc, node_id: str, kind: str, due: datetime) -> str:
    timer: TimerDoc = {"id": new_id("tmr"), "run_id": run["id"], "node": node_id, "kind": kind, "due_at": due}
    turn.contact.setdefault("timers", []).append(timer)
    return timer["id"]


def remove_timer(turn: Turn, timer_id: str) -> None:
    turn.contact["timers"] = [t for t in turn.contact.get("timers", []) if t["id"] != timer_id]


def cancel_run_timers(turn: Turn, run: RunDoc) -> None:
    turn.contact["timers"] = [t for t in turn.contact.get("timers", []) if t["run_id"] != run["id"]]


def queue_message(turn: Turn, run: RunDoc, node_id: str, body: dict[str, Any]) -> str:
    message_id = new_id("msg")
    message: dict[str, Any] = {
        "id": message_id,
        "run_id": run["id"],
        "flow_id": run["flow_id"],
        "node": node_id,
        **address_of(turn.contact),
        "created_at": turn.now,
        **body,
    }
    if run.get("channel_id"):
        message["channel_id"] = run["channel_id"]  # the number the run talks through (router.py)
    message["rendered"] = render_message(message, turn.templates)  # as the customer will see it
    broadcast_id = (run.get("trigger") or {}).get("broadcast_id")
    if broadcast_id:
        message["broadcast_id"] = broadcast_id  # broadcast progress counts its messages' statuses
    turn.contact.setdefault("outbox", []).append(message)
    return message_id


def save_variables(turn: Turn, run: RunDoc, node_id: str, values: dict[str, Any]) -> None:
    """Store typed values (already coerced) and queue their external profile syncs."""
    variables = turn.contact.setdefault("variables", {})
    for name, value in values.items():
        variables[name] = value
        link = turn.field_links.get(name)
        if link is not None:
            queue_external_sync(turn.contact, link, name, value, turn.now, run["id"], node_id)
