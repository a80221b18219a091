"""How events move a run: a flow started, a reply, another kind of message, a timer, a failed send,
an agent picked. The machine decides, the actor acts.

Everything here is synchronous and pure over a working copy of the contact document (``Turn``,
``turn.py``); entering nodes is ``node_entry.py``, and the customer's location and form answers
``answers.py``. Effects (outbound messages, timers, follow-up flow starts) are *recorded* on the
turn; the actor commits the contact in one CAS write and only then performs them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from server.documents import ContactDoc, RunDoc, TimerDoc
from server.durations import parse_duration
from server.ids import new_id
from server.machines.answers import form_answer, is_answer_to, location_answer
from server.machines.compiler import END, CompiledFlow, button_trigger
from server.machines.contact_state import set_assignment
from server.machines.definition import (
    AnsweredNode,
    MessageNode,
    Node,
    WhatsAppFlowNode,
)
from server.machines.node_entry import enter, follow
from server.machines.replies import choose
from server.machines.turn import (
    ACTIVE,
    CONTACT_WITH_AGENT,
    AssignRequest,
    Turn,
    add_timer,
    cancel_run_timers,
    end_run,
    record_step,
    remove_timer,
)


def new_run(
    turn: Turn,
    compiled: CompiledFlow,
    flow_id: str,
    version: int,
    trigger: dict[str, Any],
    channel_id: str | None = None,
) -> RunDoc:
    """A new run; ``channel_id`` is the number its messages go out through (None: the default)."""
    run: RunDoc = {
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


def start(turn: Turn, compiled: CompiledFlow, run: RunDoc) -> None:
    record_step(turn, run, None, "started", "ok", detail={"flow": run["flow_name"]})
    enter(turn, compiled, run, compiled.definition.start or END)


def waiting_for_reply(contact: ContactDoc) -> RunDoc | None:
    """The run (at most one) whose current node is waiting for what the customer says."""
    runs: list[RunDoc] = contact.get("runs", [])
    for run in runs[::-1]:
        waiting = run.get("waiting_for") or {}
        if run["status"] == "waiting" and waiting.get("kind") == "reply":
            return run
    return None


def node_of(compiled: CompiledFlow, run: RunDoc) -> Node | None:
    """The node ``run`` is at in ``compiled`` (None once it ended, or for a node the flow lost)."""
    node_id = run["node"]
    return compiled.nodes.get(node_id) if node_id is not None else None


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
    turn: Turn, compiled: CompiledFlow, run: RunDoc, text: str | None, button: str | None
) -> bool:
    """Move ``run`` by the reply rules (``replies.choose``); False when the message chose no path.

    Whatever the customer said, the node's no-reply timer stops: they answered. A message that
    matches nothing keeps the run waiting (see ``_not_understood``).
    """
    node = node_of(compiled, run)
    if not isinstance(node, AnsweredNode):
        return False
    node_id = node.id
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
    cancel_run_timers(turn, run)
    record_step(turn, run, node_id, "button" if choice.path == "button" else "reply", "ok", detail=detail)
    turn.answered[run["id"]] = node_id
    follow(turn, compiled, run, node_id, trigger)
    return True


def deliver_other_message(
    turn: Turn,
    compiled: CompiledFlow,
    run: RunDoc,
    kind: str,
    location: dict[str, Any] | None = None,
    form: dict[str, Any] | None = None,
) -> None:
    """A message that is not text (image, location, reaction, a form's answer...).

    A location answers a location request and a form's answer (``nfm_reply``) answers the
    WhatsApp Flow that asked; anything else chooses no path, but the customer is there.
    """
    node = node_of(compiled, run)
    if kind == "location" and isinstance(node, MessageNode) and node.location_request is not None:
        location_answer(turn, compiled, run, node, location or {})
    elif kind == "nfm_reply" and isinstance(node, WhatsAppFlowNode) and is_answer_to(run, node, form):
        form_answer(turn, compiled, run, node, form or {})
    elif isinstance(node, AnsweredNode):
        _not_understood(turn, compiled, run, node, kind=kind)


def customer_wrote_to_agent(turn: Turn, compiled: CompiledFlow, run: RunDoc) -> None:
    """The customer wrote while an agent owns the conversation: the message is the agent's, but
    the waiting run's no-reply time starts again (a customer who wrote is not silent)."""
    node = node_of(compiled, run)
    if isinstance(node, AnsweredNode) and node.no_reply is not None:
        due = _restart_no_reply(turn, run, node)
        record_step(
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
    run: RunDoc,
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
        record_step(turn, run, node.id, "reply_not_understood", "reprompted", detail={**detail, "why": why})
        cancel_run_timers(turn, run)
        enter(turn, compiled, run, node.id, again=True)  # sends it again and waits, fresh no-reply time
        asking = run["waiting_for"]
        if run["status"] == "waiting" and asking:
            asking["reprompted"] = True
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
    record_step(turn, run, node.id, "reply_not_understood", "waiting", detail={**detail, "why": why})


def _restart_no_reply(turn: Turn, run: RunDoc, node: AnsweredNode) -> datetime | None:
    """Cancel the node's no-reply timer and, when it has one, start it again from now."""
    cancel_run_timers(turn, run)
    waiting = run.get("waiting_for")
    if waiting is None:
        return None
    waiting.pop("timer_id", None)
    waiting.pop("due_at", None)
    if node.no_reply is None:
        return None
    due = turn.now + parse_duration(node.no_reply.after)
    waiting["timer_id"] = add_timer(turn, run, node.id, "no_reply", due)
    waiting["due_at"] = due
    turn.changed_runs.add(run["id"])
    return due


def send_failed(turn: Turn, compiled: CompiledFlow, run: RunDoc, node_id: str, code: str | None) -> bool:
    """A message the run is still at was refused for good: follow ``on_failure``, or fail the run.

    Never leaves the run waiting for an answer to a message the customer did not get. True when
    the run took ``on_failure``.
    """
    node = compiled.nodes.get(node_id)
    cancel_run_timers(turn, run)
    if isinstance(node, AnsweredNode) and node.on_failure is not None:
        follow(turn, compiled, run, node_id, "failed")
        return True
    end_run(turn, run, "failed", f"SEND_FAILED:{code or 'UNKNOWN'}")
    return False


def skip_run(turn: Turn, run: RunDoc, agent_id: str | None) -> None:
    """End a run before its first node: an agent owns the conversation (handoff, docs/flows.md)."""
    record_step(
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


def apply_timer(turn: Turn, compiled: CompiledFlow, run: RunDoc, timer: TimerDoc) -> bool:
    """Apply a due timer to its run; False when it is stale (the run moved on since it was set).

    Called by the actor for a ``TimerFired`` event; ``actors.timers.fire_timer`` is the arq job that
    delivers that event."""
    waiting = run.get("waiting_for") or {}
    node_id = run["node"]
    if run["status"] != "waiting" or node_id is None or waiting.get("timer_id") != timer["id"]:
        return False
    remove_timer(turn, timer["id"])
    trigger = "no_reply" if timer["kind"] == "no_reply" else "timer"
    record_step(turn, run, node_id, trigger, "ok")
    follow(turn, compiled, run, node_id, trigger)
    return True


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
        record_step(
            turn, run, request.node, "not_assigned", "NO_AGENT_AVAILABLE", detail={**asked, "why": why}
        )
        end_run(turn, run, "failed", "NO_AGENT_AVAILABLE")
        return
    set_assignment(
        turn.contact, agent, turn.now, source="flow", team=request.team, run_id=run["id"], node=request.node
    )
    detail = {**asked, "agent_id": agent["_id"], "agent_email": agent.get("email")}
    record_step(turn, run, request.node, "assigned", "ok", detail=detail)
    follow(turn, compiled, run, request.node, "advance")
