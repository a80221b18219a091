"""What entering each node kind does, and how events move a run: the machine decides, the actor acts.

Everything here is synchronous and pure over a working copy of the contact document: effects
(outbound messages, timers, follow-up flow starts) are *recorded* on the ``Turn``; the actor
commits the contact in one CAS write and only then performs them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from server.clock import as_utc
from server.durations import parse_duration
from server.errors import InvalidInput
from server.identity import address_of
from server.ids import new_id
from server.machines import splits
from server.machines.compiler import END, CompiledFlow, branch_trigger, button_trigger
from server.machines.contact_state import queue_external_sync, set_assignment, set_consent
from server.machines.definition import (
    AnsweredNode,
    AssignNode,
    ConditionNode,
    ConnectFlowNode,
    DelayNode,
    MessageNode,
    Node,
    OptInNode,
    SetVariableNode,
    SimpleMessageNode,
    SplitNode,
    TagNode,
    TemplateNode,
    WhatsAppFlowNode,
)
from server.machines.documents import StepDoc, TimerDoc
from server.machines.placeholders import render, scope_value
from server.machines.regional import FALLBACK_LOCALE, Regional
from server.machines.rendering import TemplateKey, render_message
from server.machines.replies import choose
from server.machines.values import coerce_value
from server.window import window_open

# Steps kept per run: the first ("started") and the latest; the count dropped between is kept.
MAX_STEPS_KEPT = 200
ACTIVE = ("active", "waiting")

WAIT = "__wait__"
ENDED = "__ended__"
MOVED = "__moved__"  # the node moved the run itself (re-asking a question): nothing to follow

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

    def step(self, run: dict[str, Any], step: StepDoc) -> None: ...

    def entered(self, run: dict[str, Any], node_id: str) -> None: ...

    def waited(self, run: dict[str, Any], node_id: str) -> None: ...


@dataclass
class Turn:
    """One actor turn: the working contact, the clock reading, and the effects recorded so far."""

    contact: dict[str, Any]
    now: datetime
    timezone: str = "UTC"
    locale: str = FALLBACK_LOCALE
    changed_runs: set[str] = field(default_factory=set)
    connects: list[ConnectRequest] = field(default_factory=list)
    segment_matcher: Callable[[dict[str, Any], dict[str, Any], datetime, str], bool] | None = None
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


def new_run(
    turn: Turn,
    compiled: CompiledFlow,
    flow_id: str,
    version: int,
    trigger: dict[str, Any],
    channel_id: str | None = None,
) -> dict[str, Any]:
    """A new run; ``channel_id`` is the number its messages go out through (None: the default)."""
    run: dict[str, Any] = {
        "id": new_id("run"),
        "flow_id": flow_id,
        "flow_name": compiled.definition.name,
        "version": version,
        "node": compiled.definition.start,
        "status": "active",
        "waiting_for": None,
        "steps": [],
        "trigger": trigger,
        "reply": None,
        "started_at": turn.now,
        "updated_at": turn.now,
        "ended_at": None,
        "end_reason": None,
        "channel_id": channel_id,
    }
    turn.contact.setdefault("runs", []).append(run)
    turn.changed_runs.add(run["id"])
    return run


def start(turn: Turn, compiled: CompiledFlow, run: dict[str, Any]) -> None:
    _record(turn, run, None, "started", "ok", detail={"flow": run["flow_name"]})
    _enter(turn, compiled, run, compiled.definition.start or END)


def waiting_for_reply(contact: dict[str, Any]) -> dict[str, Any] | None:
    """The run (at most one) whose current node is waiting for what the customer says."""
    runs: list[dict[str, Any]] = contact.get("runs", [])
    for run in runs[::-1]:
        waiting = run.get("waiting_for") or {}
        if run["status"] == "waiting" and waiting.get("kind") == "reply":
            return run
    return None


def button_titles(turn: Turn, node: AnsweredNode) -> list[tuple[str, str | None]]:
    """The node's buttons (list rows, carousel cards' quick replies) as the customer sees them:
    (id, title), in order.

    A template node's button without a ``title`` shows the template's quick reply at the same
    position (node button i answers quick reply i, see the validator). A form has none.
    """
    if isinstance(node, WhatsAppFlowNode):
        return []
    if isinstance(node, MessageNode):
        return [(b.id, b.title) for b in node.choices]
    offered = turn.template_buttons.get((node.template, node.language), [])
    return [(b.id, b.title or (offered[i] if i < len(offered) else None)) for i, b in enumerate(node.buttons)]


def deliver_reply(
    turn: Turn, compiled: CompiledFlow, run: dict[str, Any], text: str | None, button: str | None
) -> bool:
    """Move ``run`` by the reply rules (``replies.choose``); False when the message chose no path.

    Whatever the customer said, the node's no-reply timer stops: they answered. A message that
    matches nothing keeps the run waiting (see ``_not_understood``).
    """
    node_id = run["node"]
    node = compiled.nodes.get(node_id)
    if not isinstance(node, AnsweredNode):
        return False
    titles = button_titles(turn, node)
    on_reply = not isinstance(node, WhatsAppFlowNode) and node.on_reply is not None
    choice = choose(titles, text, button, on_reply, node.on_other is not None)
    if choice.path == "none":
        _not_understood(turn, compiled, run, node, text=text, button=button)
        return False
    if choice.path == "button":
        assert choice.button is not None
        trigger = button_trigger(choice.button)
        title = dict(titles).get(choice.button)
        # A number stands for the button: the reply is what a tap would have said, its title.
        run["reply"] = (title or choice.button) if choice.matched_by == "number" else (text or choice.button)
        run["button"] = choice.button
        detail: dict[str, Any] = {"text": text, "button": choice.button, "matched_by": choice.matched_by}
    else:
        trigger = "reply" if choice.path == "on_reply" else "other"
        run["reply"] = text if text is not None else button
        run["button"] = button
        detail = {"text": text, "button": button, "path": choice.path}
    _cancel_run_timers(turn, run)
    _record(turn, run, node_id, "button" if choice.path == "button" else "reply", "ok", detail=detail)
    turn.answered[run["id"]] = node_id
    _follow(turn, compiled, run, node_id, trigger)
    return True


def deliver_other_message(
    turn: Turn,
    compiled: CompiledFlow,
    run: dict[str, Any],
    kind: str,
    location: dict[str, Any] | None = None,
    form: dict[str, Any] | None = None,
) -> None:
    """A message that is not text (image, location, reaction, a form's answer...).

    A location answers a location request and a form's answer (``nfm_reply``) answers the
    WhatsApp Flow that asked; anything else chooses no path, but the customer is there.
    """
    node = compiled.nodes.get(run["node"])
    if kind == "location" and isinstance(node, MessageNode) and node.location_request is not None:
        _location_answer(turn, compiled, run, node, location or {})
    elif kind == "nfm_reply" and isinstance(node, WhatsAppFlowNode) and _answers(run, node, form):
        _form_answer(turn, compiled, run, node, form or {})
    elif isinstance(node, AnsweredNode):
        _not_understood(turn, compiled, run, node, kind=kind)


def customer_wrote_to_agent(turn: Turn, compiled: CompiledFlow, run: dict[str, Any]) -> None:
    """The customer wrote while an agent owns the conversation: the message is the agent's, but
    the waiting run's no-reply time starts again (a customer who wrote is not silent)."""
    node = compiled.nodes.get(run["node"])
    if isinstance(node, AnsweredNode) and node.no_reply is not None:
        due = _restart_no_reply(turn, run, node)
        _record(
            turn,
            run,
            node.id,
            "reply_held",
            "ASSIGNED",
            detail={
                "why": "an agent owns the conversation, so the message is theirs; "
                "the no-reply time starts again from it",
                "no_reply_at": due,
            },
        )


def _not_understood(
    turn: Turn,
    compiled: CompiledFlow,
    run: dict[str, Any],
    node: AnsweredNode,
    text: str | None = None,
    button: str | None = None,
    kind: str = "text",
) -> None:
    """Nothing to follow: re-prompt once with the buttons, or keep waiting with a fresh no-reply time.

    Only a simple message that asks for something (buttons, a list, a location, a form) is
    repeated (free inside the window the customer just opened); a template is not sent again (it
    may be charged), and a non-text message (a photo, a sticker) is not answered with a repeat.
    """
    waiting = run.get("waiting_for") or {}
    detail: dict[str, Any] = {"text": text, "button": button} if kind == "text" else {"kind": kind}
    repeatable = isinstance(node, WhatsAppFlowNode) or (
        isinstance(node, MessageNode) and (bool(node.choices) or node.location_request is not None)
    )
    reprompt = kind == "text" and repeatable and not waiting.get("reprompted")
    if reprompt:
        why = "the message matches no button's title or number; the question is asked again with its buttons"
        _record(turn, run, node.id, "reply_not_understood", "reprompted", detail={**detail, "why": why})
        _cancel_run_timers(turn, run)
        _enter(turn, compiled, run, node.id, again=True)  # sends it again and waits, fresh no-reply time
        if run["status"] == "waiting" and run.get("waiting_for"):
            run["waiting_for"]["reprompted"] = True
        return
    if kind == "text":
        why = "the message matches no button and this node has no on_reply or on_other; still waiting" + (
            " (already asked again once)" if waiting.get("reprompted") else ""
        )
    else:
        why = f"a {kind} message is not an answer to this node; still waiting"
    due = _restart_no_reply(turn, run, node)
    if due is not None:
        detail["no_reply_at"] = due
    _record(turn, run, node.id, "reply_not_understood", "waiting", detail={**detail, "why": why})


def _restart_no_reply(turn: Turn, run: dict[str, Any], node: AnsweredNode) -> datetime | None:
    """Cancel the node's no-reply timer and, when it has one, start it again from now."""
    _cancel_run_timers(turn, run)
    waiting = run.get("waiting_for")
    if waiting is None:
        return None
    waiting.pop("timer_id", None)
    waiting.pop("due_at", None)
    if node.no_reply is None:
        return None
    due = turn.now + parse_duration(node.no_reply.after)
    waiting["timer_id"] = _add_timer(turn, run, node.id, "no_reply", due)
    waiting["due_at"] = due
    turn.changed_runs.add(run["id"])
    return due


def send_failed(
    turn: Turn, compiled: CompiledFlow, run: dict[str, Any], node_id: str, code: str | None
) -> bool:
    """A message the run is still at was refused for good: follow ``on_failure``, or fail the run.

    Never leaves the run waiting for an answer to a message the customer did not get. True when
    the run took ``on_failure``.
    """
    node = compiled.nodes.get(node_id)
    _cancel_run_timers(turn, run)
    if isinstance(node, AnsweredNode) and node.on_failure is not None:
        _follow(turn, compiled, run, node_id, "failed")
        return True
    end_run(turn, run, "failed", f"SEND_FAILED:{code or 'UNKNOWN'}")
    return False


def skip_run(turn: Turn, run: dict[str, Any], agent_id: str | None) -> None:
    """End a run before its first node: an agent owns the conversation (handoff, docs/flows.md)."""
    _record(
        turn,
        run,
        None,
        "not_started",
        CONTACT_WITH_AGENT,
        detail={
            "agent_id": agent_id,
            "why": "an agent owns this conversation, so flows do not message the contact until it is "
            "released; set settings.runs_while_assigned on a flow that must still run",
        },
    )
    end_run(turn, run, "cancelled", CONTACT_WITH_AGENT)


def apply_timer(turn: Turn, compiled: CompiledFlow, run: dict[str, Any], timer: TimerDoc) -> bool:
    """Apply a due timer to its run; False when it is stale (the run moved on since it was set).

    Called by the actor for a ``TimerFired`` event; ``actors.timers.fire_timer`` is the arq job that
    delivers that event."""
    waiting = run.get("waiting_for") or {}
    if run["status"] != "waiting" or waiting.get("timer_id") != timer["id"]:
        return False
    _remove_timer(turn, timer["id"])
    trigger = "no_reply" if timer["kind"] == "no_reply" else "timer"
    _record(turn, run, run["node"], trigger, "ok")
    _follow(turn, compiled, run, run["node"], trigger)
    return True


def end_run(turn: Turn, run: dict[str, Any], status: str, reason: str) -> None:
    if run["status"] not in ACTIVE:
        return
    _cancel_run_timers(turn, run)
    run["status"] = status
    run["end_reason"] = reason
    run["ended_at"] = turn.now
    run["waiting_for"] = None
    run["updated_at"] = turn.now
    _record(turn, run, run.get("node"), "ended", status, detail={"reason": reason})


def _follow(turn: Turn, compiled: CompiledFlow, run: dict[str, Any], node_id: str, trigger: str) -> None:
    target = compiled.step(node_id, trigger)
    if target is None:
        end_run(turn, run, "failed", f"NO_PATH:{trigger}")
        return
    run["waiting_for"] = None
    run["status"] = "active"
    _enter(turn, compiled, run, target)


def _enter(
    turn: Turn, compiled: CompiledFlow, run: dict[str, Any], node_id: str, again: bool = False
) -> None:
    """Enter nodes one after another until the run waits or ends.

    However long the path, it ends: a node entered a second time in one turn (no wait in
    between, since a wait ends the turn's work on the run) is a spin, and stops the run.
    ``again``: the first node asks its question once more (not a new entry for the observer).
    """
    while True:
        if node_id == END:
            run["node"] = None
            end_run(turn, run, "completed", "completed")
            return
        node = compiled.nodes[node_id]
        run["node"] = node_id
        turn.changed_runs.add(run["id"])
        if (run["flow_id"], node_id) in turn.entered:
            why = (
                f"node {node_id!r} of {run.get('flow_name')!r} was reached again without waiting "
                "in between: the flow loops without a wait (add a delay or a message that waits)"
            )
            _record(turn, run, node_id, "spin_stopped", SPIN_LOOP, detail={"why": why})
            end_run(turn, run, "failed", SPIN_LOOP)
            return
        turn.entered.add((run["flow_id"], node_id))
        observer = None if again else turn.observer
        if observer is not None:
            observer.entered(run, node_id)
        outcome = _BEHAVIOUR[type(node)](turn, compiled, run, node)
        if outcome == WAIT:
            run["status"] = "waiting"
            run["updated_at"] = turn.now
            if observer is not None and (run.get("waiting_for") or {}).get("kind") != "assignment":
                observer.waited(run, node_id)  # an assignment is settled within the turn
            return
        if outcome in (ENDED, MOVED):
            return
        target = compiled.step(node_id, outcome)
        if target is None:
            end_run(turn, run, "failed", f"NO_PATH:{outcome}")
            return
        node_id = target
        again = False


def _record(
    turn: Turn,
    run: dict[str, Any],
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


def _add_timer(turn: Turn, run: dict[str, Any], node_id: str, kind: str, due: datetime) -> str:
    timer: TimerDoc = {"id": new_id("tmr"), "run_id": run["id"], "node": node_id, "kind": kind, "due_at": due}
    turn.contact.setdefault("timers", []).append(timer)
    return timer["id"]


def _remove_timer(turn: Turn, timer_id: str) -> None:
    turn.contact["timers"] = [t for t in turn.contact.get("timers", []) if t["id"] != timer_id]


def _cancel_run_timers(turn: Turn, run: dict[str, Any]) -> None:
    turn.contact["timers"] = [t for t in turn.contact.get("timers", []) if t["run_id"] != run["id"]]


def _queue_message(turn: Turn, run: dict[str, Any], node_id: str, body: dict[str, Any]) -> str:
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


def _wait_for_answer(turn: Turn, run: dict[str, Any], node: AnsweredNode) -> str:
    if not node.waits:
        return "advance"
    buttons = [] if isinstance(node, WhatsAppFlowNode) else node.buttons
    if isinstance(node, MessageNode):
        buttons = node.choices
    waiting: dict[str, Any] = {"kind": "reply", "node": node.id, "buttons": [b.id for b in buttons]}
    if node.no_reply is not None:
        due = turn.now + parse_duration(node.no_reply.after)
        waiting["timer_id"] = _add_timer(turn, run, node.id, "no_reply", due)
        waiting["due_at"] = due
    run["waiting_for"] = waiting
    return WAIT


def _window_closed(turn: Turn, run: dict[str, Any], node: SimpleMessageNode) -> str | None:
    """A simple message due while the 24-hour window is closed: the outcome to follow, or None."""
    if turn.window_open():
        return None
    _record(
        turn,
        run,
        node.id,
        "message_not_sent",
        "WINDOW_CLOSED",
        detail={
            "why": "the 24-hour customer service window is closed; only a template can open the conversation"
        },
    )
    if node.on_failure is not None:
        return "failed"
    end_run(turn, run, "failed", "WINDOW_CLOSED")
    return ENDED


def _message(turn: Turn, compiled: CompiledFlow, run: dict[str, Any], node: Node) -> str:
    assert isinstance(node, MessageNode)
    closed = _window_closed(turn, run, node)
    if closed is not None:
        return closed
    warnings: list[str] = []
    body: dict[str, Any] = {"kind": "text"}
    if node.text is not None:
        text, missing = render(node.text, turn.contact, run, turn.regional)
        warnings += missing
        body["text"] = text
    if node.media is not None:
        caption, missing = render(node.media.caption or "", turn.contact, run, turn.regional)
        warnings += missing
        body["kind"] = "media"
        body["media"] = {
            "kind": node.media.kind,
            "url": node.media.url,
            "caption": caption or None,
            "filename": node.media.filename,
        }
    hint = turn.hints.pop(run["id"], None)
    if hint and body["kind"] == "media" and "text" not in body:
        body["media"]["caption"] = "\n\n".join(p for p in (body["media"]["caption"], hint) if p)
    elif hint:
        body["text"] = "\n\n".join(p for p in (body.get("text"), hint) if p)
    if node.buttons and not node.as_list:
        body["kind"] = "buttons"
        body["buttons"] = [{"id": b.id, "title": b.title or b.id} for b in node.buttons]
    body.update(_interactive(turn, run, node, warnings))
    message_id = _queue_message(turn, run, node.id, body)
    _record(turn, run, node.id, "message_sent", "queued", detail={"message": message_id}, warnings=warnings)
    return _wait_for_answer(turn, run, node)


def _template(turn: Turn, compiled: CompiledFlow, run: dict[str, Any], node: Node) -> str:
    assert isinstance(node, TemplateNode)
    categories = turn.template_categories
    category = categories.get((node.template, node.language)) or categories.get((node.template, ""))
    if category == "MARKETING" and not turn.contact.get("opted_in"):
        # Consent is checked when the run reaches the node, on the contact as it is now.
        _record(
            turn,
            run,
            node.id,
            "template_not_sent",
            "NO_OPT_IN",
            detail={
                "template": node.template,
                "why": "a MARKETING template needs the contact's marketing opt-in; the contact has none",
            },
        )
        if node.on_failure is not None:
            return "failed"
        end_run(turn, run, "failed", "NO_OPT_IN")
        return ENDED
    warnings: list[str] = []

    def rendered(value: str) -> str:
        text, missing = render(value, turn.contact, run, turn.regional)
        warnings.extend(missing)
        return text

    params = node.params.mapped(rendered).stored()
    body = {
        "kind": "template",
        "template": {"name": node.template, "language": node.language, "params": params},
        "buttons": [{"id": b.id, "title": b.title or b.id} for b in node.buttons],
    }
    message_id = _queue_message(turn, run, node.id, body)
    _record(turn, run, node.id, "template_sent", "queued", detail={"message": message_id}, warnings=warnings)
    return _wait_for_answer(turn, run, node)


def _opt_in(turn: Turn, compiled: CompiledFlow, run: dict[str, Any], node: Node) -> str:
    set_consent(turn.contact, True, turn.now, "flow", flow_id=run["flow_id"], node=node.id, run_id=run["id"])
    _record(turn, run, node.id, "opted_in", "ok")
    return "advance"


def _tag(turn: Turn, compiled: CompiledFlow, run: dict[str, Any], node: Node) -> str:
    assert isinstance(node, TagNode)
    tags: list[str] = list(turn.contact.get("tags", []))
    for name in node.add:
        if name not in tags:
            tags.append(name)
    tags = [t for t in tags if t not in node.remove]
    turn.contact["tags"] = tags
    _record(turn, run, node.id, "tagged", "ok", detail={"add": node.add, "remove": node.remove})
    return "advance"


def _set_variable(turn: Turn, compiled: CompiledFlow, run: dict[str, Any], node: Node) -> str:
    assert isinstance(node, SetVariableNode)
    source = node.source()
    blank: str | None = None  # why the value is missing, when a value was expected
    if source.from_ == "reply":
        value = run.get("reply")
        blank = "the reply has no text to save"
    elif source.from_ == "button":
        value = run.get("button")
        blank = "no button was pressed"
    elif source.from_ == "variable":
        value = scope_value(f"contact.{source.var}", turn.contact, run)
        blank = f"variable {source.var!r} has no value"
    else:
        value = source.value
        if isinstance(value, str):
            value, missing = render(value, turn.contact, run, turn.regional)
            if missing:
                blank = "; ".join(missing)
    known = turn.fields.get(node.field)
    problem = None
    if blank is not None and (value is None or (isinstance(value, str) and not value.strip())):
        problem = blank  # never saved as if it were an answer
    elif known is not None:
        try:
            value = coerce_value(known[0], known[1], value, turn.regional)
        except InvalidInput as exc:
            problem = exc.message
    if problem is not None:
        # A reply that does not fit the field is an answer to handle, not a crash.
        return _invalid_value(turn, compiled, run, node, value, problem)
    tries = run.get("invalid_tries") or {}
    if node.id in tries:
        del tries[node.id]
    turn.contact.setdefault("variables", {})[node.field] = value
    detail: dict[str, Any] = {"field": node.field, "value": value}
    link = turn.field_links.get(node.field)
    if link is not None:
        entry = queue_external_sync(turn.contact, link, node.field, value, turn.now, run["id"], node.id)
        detail["external"] = {"provider": entry["provider"], "property": entry["property"], "sync": "queued"}
    _record(turn, run, node.id, "variable_set", "ok", detail=detail)
    return "advance"


def _invalid_value(
    turn: Turn, compiled: CompiledFlow, run: dict[str, Any], node: SetVariableNode, value: Any, why: str
) -> str:
    """Ask the question the customer answered again (``retries`` times), then ``on_invalid``.

    Without ``on_invalid`` the run ends with ``INVALID_VALUE``. Only an answer given in this very
    turn is asked again: a value from elsewhere (a variable, a placeholder, an old reply) has
    no question to repeat.
    """
    detail: dict[str, Any] = {"field": node.field, "value": value, "why": why}
    question_id = turn.answered.get(run["id"]) if node.source().from_ in ("reply", "button") else None
    question = compiled.nodes.get(question_id) if question_id else None
    tries: dict[str, int] = run.setdefault("invalid_tries", {})
    used = tries.get(node.id, 0)
    if isinstance(question, MessageNode | TemplateNode) and used < node.retries:
        tries[node.id] = used + 1
        detail.update(asking_again=question.id, attempt=used + 1, retries=node.retries)
        _record(turn, run, node.id, "variable_not_set", INVALID_VALUE, detail=detail)
        field_type, options = turn.fields.get(node.field, ("", []))
        if field_type.upper() == "FIXED" and options:
            turn.hints[run["id"]] = " / ".join(options)
        turn.answered.pop(run["id"], None)
        _enter(turn, compiled, run, question.id, again=True)
        turn.hints.pop(run["id"], None)
        return MOVED
    tries.pop(node.id, None)
    _record(turn, run, node.id, "variable_not_set", INVALID_VALUE, detail=detail)
    if node.on_invalid is not None:
        return "invalid"
    end_run(turn, run, "failed", INVALID_VALUE)
    return ENDED


def _assign(turn: Turn, compiled: CompiledFlow, run: dict[str, Any], node: Node) -> str:
    """Ask the actor for an agent: picking one reads the store (availability, counters, loads).

    The run pauses here only within the turn; ``finish_assign`` resumes it before the commit, so
    the nodes after it (a condition on ``assigned``, a "te atiende Ana" message) see the result.
    """
    assert isinstance(node, AssignNode)
    strategy = node.strategy if "strategy" in node.model_fields_set else None
    turn.assigns.append(AssignRequest(run["id"], node.id, node.agent, node.team, strategy))
    run["waiting_for"] = {"kind": "assignment", "node": node.id}
    return WAIT


def finish_assign(
    turn: Turn,
    compiled: CompiledFlow,
    request: AssignRequest,
    agent: dict[str, Any] | None,
    why: str | None = None,
) -> None:
    """Resume the run of ``request`` with the agent picked, or end it with ``NO_AGENT_AVAILABLE``."""
    run = next((r for r in turn.contact.get("runs", []) if r["id"] == request.run_id), None)
    if run is None or run["status"] not in ACTIVE or run.get("node") != request.node:
        return
    run["waiting_for"] = None
    run["status"] = "active"
    asked = {"agent": request.agent, "team": request.team}
    if agent is None:
        _record(turn, run, request.node, "not_assigned", "NO_AGENT_AVAILABLE", detail={**asked, "why": why})
        end_run(turn, run, "failed", "NO_AGENT_AVAILABLE")
        return
    set_assignment(
        turn.contact, agent, turn.now, source="flow", team=request.team, run_id=run["id"], node=request.node
    )
    detail = {**asked, "agent_id": agent["_id"], "agent_email": agent.get("email")}
    _record(turn, run, request.node, "assigned", "ok", detail=detail)
    _follow(turn, compiled, run, request.node, "advance")


def record_step(
    turn: Turn,
    run: dict[str, Any],
    node_id: str | None,
    action: str,
    outcome: str,
    detail: dict[str, Any] | None = None,
) -> None:
    """Add a step to a run from outside its node behaviour (e.g. an external sync's result)."""
    _record(turn, run, node_id, action, outcome, detail=detail)


def _condition(turn: Turn, compiled: CompiledFlow, run: dict[str, Any], node: Node) -> str:
    assert isinstance(node, ConditionNode)
    matcher = turn.segment_matcher
    for index, branch in enumerate(node.branches):
        if matcher is not None and matcher(branch.segment, turn.contact, turn.now, turn.timezone):
            _record(turn, run, node.id, "condition", "matched", detail={"branch": branch.name})
            return branch_trigger(index)
    _record(turn, run, node.id, "condition", "otherwise")
    return "otherwise"


def _delay(turn: Turn, compiled: CompiledFlow, run: dict[str, Any], node: Node) -> str:
    assert isinstance(node, DelayNode)
    if node.for_ is not None:
        due = turn.now + parse_duration(node.for_)
    else:
        moment = datetime.fromisoformat(node.until or "")
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=ZoneInfo(turn.timezone))
        due = as_utc(moment)
        if due <= turn.now:
            why = "that moment has already passed; the run continues at once"
            _record(turn, run, node.id, "delay", "passed", detail={"until": due, "why": why})
            return "timer"
    timer_id = _add_timer(turn, run, node.id, "delay", due)
    run["waiting_for"] = {"kind": "timer", "node": node.id, "timer_id": timer_id, "due_at": due}
    _record(turn, run, node.id, "delay", "waiting", detail={"until": due})
    return WAIT


def _connect_flow(turn: Turn, compiled: CompiledFlow, run: dict[str, Any], node: Node) -> str:
    assert isinstance(node, ConnectFlowNode)
    turn.connects.append(ConnectRequest(node.flow, run["id"], run.get("trigger") or {}))
    _record(turn, run, node.id, "connect_flow", "ok", detail={"flow": node.flow})
    end_run(turn, run, "completed", "connected")
    return ENDED


# --- A/B split ----------------------------------------------------------------------------------


def _split(turn: Turn, compiled: CompiledFlow, run: dict[str, Any], node: Node) -> str:
    """Take a weighted branch; a sticky split gives a returning contact the branch it had.

    The step (action ``split``, outcome the branch name) counts the branch's entries, and
    ``run["splits"]`` (``[{"node", "branch"}]``, node ids may hold dots) lets analytics group how
    runs ended by branch (docs/flows.md).
    """
    assert isinstance(node, SplitNode)
    names = [b.name for b in node.branches]
    if not names:
        end_run(turn, run, "failed", "NO_PATH:split")
        return ENDED
    contact = turn.contact
    kept = splits.kept_branch(contact, run["flow_id"], node.id) if node.sticky else None
    if kept in names:
        name = kept
    else:
        salt = "sticky" if node.sticky else f"{run['id']}:{turn.now.isoformat()}"
        number = splits.draw(str(contact.get("_id")), run["flow_id"], node.id, salt)
        name = splits.pick(node.branches, number).name
        if node.sticky:
            splits.keep(contact, run["flow_id"], node.id, name, turn.now, run["id"])
    taken = [e for e in run.get("splits") or [] if e.get("node") != node.id]
    run["splits"] = [*taken, {"node": node.id, "branch": name}]
    detail = {"branch": name, "kept": kept == name, "sticky": node.sticky}
    _record(turn, run, node.id, "split", name, detail=detail)
    return branch_trigger(names.index(name))


# --- end of A/B split ---------------------------------------------------------------------------
# --- interactive messages: lists, links, location requests, carousels --------------------------

# The label of the button that opens a list, when the node sets none, by the workspace's language.
LIST_BUTTON_LABELS = {
    "es": "Ver opciones",
    "pt": "Ver opções",
    "fr": "Voir les options",
    "it": "Vedi opzioni",
    "de": "Optionen ansehen",
    "en": "See options",
}


def list_button_label(node: MessageNode, locale: str) -> str:
    return node.list_button or LIST_BUTTON_LABELS.get(locale.split("-")[0].lower(), LIST_BUTTON_LABELS["en"])


def _interactive(turn: Turn, run: dict[str, Any], node: MessageNode, warnings: list[str]) -> dict[str, Any]:
    """The outbox fields of a list, CTA URL, location request or carousel message (payloads.py)."""

    def filled(value: str) -> str:
        text, missing = render(value, turn.contact, run, turn.regional)
        warnings.extend(missing)
        return text

    if node.carousel:
        return {"kind": "carousel", "cards": [_card(card, filled) for card in node.carousel]}
    if node.location_request is not None:
        return {"kind": "location_request"}
    if node.link is not None:
        return {"kind": "cta_url", "link": {"title": filled(node.link.title), "url": filled(node.link.url)}}
    if node.as_list:
        label = filled(list_button_label(node, turn.locale))
        return {"kind": "list", "list": {"button": label, "sections": _sections(node)}}
    return {}


def _sections(node: MessageNode) -> list[dict[str, Any]]:
    """The list's rows grouped in their sections, in the node's order (the validator keeps a
    section's rows together, so the numbers customers type follow what they see)."""
    sections: list[dict[str, Any]] = []
    for button in node.buttons:
        row: dict[str, Any] = {"id": button.id, "title": button.title or button.id}
        if button.description:
            row["description"] = button.description
        if not sections or sections[-1].get("title") != button.section:
            sections.append({"title": button.section, "rows": []} if button.section else {"rows": []})
        sections[-1]["rows"].append(row)
    return sections


def _card(card: Any, filled: Callable[[str], str]) -> dict[str, Any]:
    out: dict[str, Any] = {"media": {"kind": card.media.kind, "url": card.media.url}}
    if card.text:
        out["text"] = filled(card.text)
    if card.link is not None:
        out["link"] = {"title": filled(card.link.title), "url": filled(card.link.url)}
    if card.buttons:
        out["buttons"] = [{"id": b.id, "title": b.title or b.id} for b in card.buttons]
    return out


def _location_answer(
    turn: Turn, compiled: CompiledFlow, run: dict[str, Any], node: MessageNode, location: dict[str, Any]
) -> None:
    """The customer shared a location: its parts go into the node's fields, then ``location``."""
    assert node.location_request is not None
    saved: dict[str, Any] = {}
    skipped: list[str] = []
    for part, field_name in node.location_request.save.model_dump().items():
        value = location.get(part)
        if field_name is None or value is None or value == "":
            continue
        known = turn.fields.get(field_name)
        try:
            value = coerce_value(known[0], known[1], value, turn.regional) if known else value
        except InvalidInput as exc:  # the field's type changed since the flow was published
            skipped.append(f"{part} not saved in {field_name!r}: {exc.message}")
            continue
        saved[field_name] = value
    _save_variables(turn, run, node.id, saved)
    run["reply"] = location.get("address") or location.get("name") or _coordinates(location)
    run["button"] = None
    run["location"] = location
    _cancel_run_timers(turn, run)
    detail = {"location": location, "saved": saved}
    _record(turn, run, node.id, "location", "ok", detail=detail, warnings=skipped or None)
    turn.answered[run["id"]] = node.id
    _follow(turn, compiled, run, node.id, "location")


def _coordinates(location: dict[str, Any]) -> str | None:
    if location.get("latitude") is None or location.get("longitude") is None:
        return None
    return f"{location['latitude']}, {location['longitude']}"


def _save_variables(turn: Turn, run: dict[str, Any], node_id: str, values: dict[str, Any]) -> None:
    """Store typed values (already coerced) and queue their external profile syncs."""
    variables = turn.contact.setdefault("variables", {})
    for name, value in values.items():
        variables[name] = value
        link = turn.field_links.get(name)
        if link is not None:
            queue_external_sync(turn.contact, link, name, value, turn.now, run["id"], node_id)


# --- WhatsApp Flows: a form sent, its answer saved into typed fields -----------------------------


def flow_token(run: dict[str, Any], node: WhatsAppFlowNode) -> str:
    """What Meta hands back in the answer (``response_json.flow_token``): which run and node asked."""
    return f"konvo:{run['id']}:{node.id}"


def _whatsapp_flow(turn: Turn, compiled: CompiledFlow, run: dict[str, Any], node: Node) -> str:
    assert isinstance(node, WhatsAppFlowNode)
    closed = _window_closed(turn, run, node)
    if closed is not None:
        return closed
    warnings: list[str] = []

    def filled(value: Any) -> Any:
        if isinstance(value, str):
            text, missing = render(value, turn.contact, run, turn.regional)
            warnings.extend(missing)
            return text
        if isinstance(value, dict):
            return {k: filled(v) for k, v in value.items()}
        if isinstance(value, list):
            return [filled(v) for v in value]
        return value

    text = filled(node.text)
    hint = turn.hints.pop(run["id"], None)
    form: dict[str, Any] = {
        "id": node.flow_id,
        "screen": node.screen,
        "cta": filled(node.cta),
        "token": flow_token(run, node),
        "mode": node.mode,
    }
    if node.data:
        form["data"] = filled(node.data)
    body = {"kind": "flow", "text": "\n\n".join(p for p in (text, hint) if p), "flow": form}
    message_id = _queue_message(turn, run, node.id, body)
    _record(turn, run, node.id, "message_sent", "queued", detail={"message": message_id}, warnings=warnings)
    return _wait_for_answer(turn, run, node)


def _answers(run: dict[str, Any], node: WhatsAppFlowNode, form: dict[str, Any] | None) -> bool:
    """Whether an answer is to this run's form: ours carry the token we sent; others (the sandbox,
    a token Meta reports as ``unused``) are taken as the answer to the form that waits."""
    response = (form or {}).get("response")
    token = response.get("flow_token") if isinstance(response, dict) else None
    return not (isinstance(token, str) and token.startswith("konvo:")) or token == flow_token(run, node)


def _form_answer(
    turn: Turn, compiled: CompiledFlow, run: dict[str, Any], node: WhatsAppFlowNode, form: dict[str, Any]
) -> None:
    """Read each mapped answer with its field's type; all fit -> saved and ``answered``, else re-ask.

    A form field left empty saves nothing (the form itself says which fields are required).
    Nothing of an answer with a value that does not fit is stored.
    """
    _cancel_run_timers(turn, run)
    response = form.get("response")
    values: dict[str, Any] = {}
    problems: list[dict[str, Any]] = []
    if not isinstance(response, dict):
        why = form.get("error") or "the form's answer has no fields to read"
        problems.append({"field": None, "value": None, "why": why})
        response = {}
    for key, field_name in node.fields.items():
        raw = response.get(key)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            continue
        known = turn.fields.get(field_name)
        try:
            values[field_name] = coerce_value(known[0], known[1], raw, turn.regional) if known else raw
        except InvalidInput as exc:
            problems.append({"field": field_name, "form_field": key, "value": raw, "why": exc.message})
    answer = {k: v for k, v in response.items() if k != "flow_token"}
    run["form"] = answer
    run["reply"] = form.get("body")
    run["button"] = None
    turn.answered[run["id"]] = node.id
    if problems:
        _form_invalid(turn, compiled, run, node, answer, problems)
        return
    (run.get("invalid_tries") or {}).pop(node.id, None)
    _save_variables(turn, run, node.id, values)
    _record(turn, run, node.id, "form_saved", "ok", detail={"answer": answer, "saved": values})
    _follow(turn, compiled, run, node.id, "answered")


def _form_invalid(
    turn: Turn,
    compiled: CompiledFlow,
    run: dict[str, Any],
    node: WhatsAppFlowNode,
    answer: dict[str, Any],
    problems: list[dict[str, Any]],
) -> None:
    """As ``set_variable``: the form is sent again ``retries`` times, then ``on_invalid`` or the end."""
    tries: dict[str, int] = run.setdefault("invalid_tries", {})
    used = tries.get(node.id, 0)
    detail: dict[str, Any] = {"answer": answer, "problems": problems, "why": problems[0]["why"]}
    if used < node.retries:
        tries[node.id] = used + 1
        detail.update(asking_again=node.id, attempt=used + 1, retries=node.retries)
        _record(turn, run, node.id, "form_not_saved", INVALID_VALUE, detail=detail)
        specs = [turn.fields.get(p["field"] or "") for p in problems]
        fixed = [" / ".join(spec[1]) for spec in specs if spec and spec[0].upper() == "FIXED" and spec[1]]
        if fixed:  # the options of a FIXED field answered wrongly, on a line of their own
            turn.hints[run["id"]] = fixed[0]
        turn.answered.pop(run["id"], None)
        _enter(turn, compiled, run, node.id)
        turn.hints.pop(run["id"], None)
        return
    tries.pop(node.id, None)
    _record(turn, run, node.id, "form_not_saved", INVALID_VALUE, detail=detail)
    if node.on_invalid is not None:
        _follow(turn, compiled, run, node.id, "invalid")
        return
    end_run(turn, run, "failed", INVALID_VALUE)


_BEHAVIOUR: dict[type, Callable[[Turn, CompiledFlow, dict[str, Any], Node], str]] = {
    MessageNode: _message,
    TemplateNode: _template,
    OptInNode: _opt_in,
    TagNode: _tag,
    SetVariableNode: _set_variable,
    AssignNode: _assign,
    ConditionNode: _condition,
    DelayNode: _delay,
    ConnectFlowNode: _connect_flow,
    SplitNode: _split,
    WhatsAppFlowNode: _whatsapp_flow,
}
