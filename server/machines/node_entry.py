"""Entering nodes until the run waits or ends, and what entering each node kind does.

Nodes that send live in ``send_nodes.py``; this module holds the loop, the table of behaviours
and the nodes that act on the contact or choose a path (tags, consent, variables, assignment,
conditions, delays, connections, A/B splits).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from server.clock import as_utc
from server.documents import RunDoc
from server.durations import parse_duration
from server.errors import InvalidInput
from server.machines import splits
from server.machines.compiler import END, CompiledFlow, branch_trigger
from server.machines.contact_state import queue_external_sync, set_consent
from server.machines.definition import (
    AssignNode,
    ConditionNode,
    ConnectFlowNode,
    DelayNode,
    MessageNode,
    Node,
    OptInNode,
    SetVariableNode,
    SplitNode,
    TagNode,
    TemplateNode,
    WhatsAppFlowNode,
)
from server.machines.placeholders import render, scope_value
from server.machines.send_nodes import send_message, send_template, send_whatsapp_flow
from server.machines.turn import (
    ENDED,
    INVALID_VALUE,
    MOVED,
    SPIN_LOOP,
    WAIT,
    AssignRequest,
    ConnectRequest,
    Turn,
    add_timer,
    end_run,
    record_step,
)
from server.machines.values import coerce_value


def follow(turn: Turn, compiled: CompiledFlow, run: RunDoc, node_id: str, trigger: str) -> None:
    target = compiled.step(node_id, trigger)
    if target is None:
        end_run(turn, run, "failed", f"NO_PATH:{trigger}")
        return
    run["waiting_for"] = None
    run["status"] = "active"
    enter(turn, compiled, run, target)


def enter(turn: Turn, compiled: CompiledFlow, run: RunDoc, node_id: str, again: bool = False) -> None:
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
            record_step(turn, run, node_id, "spin_stopped", SPIN_LOOP, detail={"why": why})
            end_run(turn, run, "failed", SPIN_LOOP)
            return
        turn.entered.add((run["flow_id"], node_id))
        observer = None if again else turn.observer
        if observer is not None:
            observer.entered(run, node_id)
        outcome = BEHAVIOUR[type(node)](turn, compiled, run, node)
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


def _opt_in(turn: Turn, compiled: CompiledFlow, run: RunDoc, node: Node) -> str:
    set_consent(turn.contact, True, turn.now, "flow", flow_id=run["flow_id"], node=node.id, run_id=run["id"])
    record_step(turn, run, node.id, "opted_in", "ok")
    return "advance"


def _tag(turn: Turn, compiled: CompiledFlow, run: RunDoc, node: Node) -> str:
    assert isinstance(node, TagNode)
    tags: list[str] = list(turn.contact.get("tags", []))
    for name in node.add:
        if name not in tags:
            tags.append(name)
    tags = [t for t in tags if t not in node.remove]
    turn.contact["tags"] = tags
    record_step(turn, run, node.id, "tagged", "ok", detail={"add": node.add, "remove": node.remove})
    return "advance"


def _set_variable(turn: Turn, compiled: CompiledFlow, run: RunDoc, node: Node) -> str:
    assert isinstance(node, SetVariableNode)
    source = node.source()
    blank: str | None = None  # why the value is missing, when a value was expected
    value: Any
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
    record_step(turn, run, node.id, "variable_set", "ok", detail=detail)
    return "advance"


def _invalid_value(
    turn: Turn, compiled: CompiledFlow, run: RunDoc, node: SetVariableNode, value: Any, why: str
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
        record_step(turn, run, node.id, "variable_not_set", INVALID_VALUE, detail=detail)
        field_type, options = turn.fields.get(node.field, ("", []))
        if field_type.upper() == "FIXED" and options:
            turn.hints[run["id"]] = " / ".join(options)
        turn.answered.pop(run["id"], None)
        enter(turn, compiled, run, question.id, again=True)
        turn.hints.pop(run["id"], None)
        return MOVED
    tries.pop(node.id, None)
    record_step(turn, run, node.id, "variable_not_set", INVALID_VALUE, detail=detail)
    if node.on_invalid is not None:
        return "invalid"
    end_run(turn, run, "failed", INVALID_VALUE)
    return ENDED


def _assign(turn: Turn, compiled: CompiledFlow, run: RunDoc, node: Node) -> str:
    """Ask the actor for an agent: picking one reads the store (availability, counters, loads).

    The run pauses here only within the turn; ``finish_assign`` resumes it before the commit, so
    the nodes after it (a condition on ``assigned``, a "te atiende Ana" message) see the result.
    """
    assert isinstance(node, AssignNode)
    strategy = node.strategy if "strategy" in node.model_fields_set else None
    turn.assigns.append(AssignRequest(run["id"], node.id, node.agent, node.team, strategy))
    run["waiting_for"] = {"kind": "assignment", "node": node.id}
    return WAIT


def _condition(turn: Turn, compiled: CompiledFlow, run: RunDoc, node: Node) -> str:
    assert isinstance(node, ConditionNode)
    matcher = turn.segment_matcher
    for index, branch in enumerate(node.branches):
        if matcher is not None and matcher(branch.segment, turn.contact, turn.now, turn.timezone):
            record_step(turn, run, node.id, "condition", "matched", detail={"branch": branch.name})
            return branch_trigger(index)
    record_step(turn, run, node.id, "condition", "otherwise")
    return "otherwise"


def _delay(turn: Turn, compiled: CompiledFlow, run: RunDoc, node: Node) -> str:
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
            record_step(turn, run, node.id, "delay", "passed", detail={"until": due, "why": why})
            return "timer"
    timer_id = add_timer(turn, run, node.id, "delay", due)
    run["waiting_for"] = {"kind": "timer", "node": node.id, "timer_id": timer_id, "due_at": due}
    record_step(turn, run, node.id, "delay", "waiting", detail={"until": due})
    return WAIT


def _connect_flow(turn: Turn, compiled: CompiledFlow, run: RunDoc, node: Node) -> str:
    assert isinstance(node, ConnectFlowNode)
    turn.connects.append(ConnectRequest(node.flow, run["id"], run.get("trigger") or {}))
    record_step(turn, run, node.id, "connect_flow", "ok", detail={"flow": node.flow})
    end_run(turn, run, "completed", "connected")
    return ENDED


# --- A/B split ----------------------------------------------------------------------------------


def _split(turn: Turn, compiled: CompiledFlow, run: RunDoc, node: Node) -> str:
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
    record_step(turn, run, node.id, "split", name, detail=detail)
    return branch_trigger(names.index(name))


BEHAVIOUR: dict[type, Callable[[Turn, CompiledFlow, RunDoc, Node], str]] = {
    MessageNode: send_message,
    TemplateNode: send_template,
    OptInNode: _opt_in,
    TagNode: _tag,
    SetVariableNode: _set_variable,
    AssignNode: _assign,
    ConditionNode: _condition,
    DelayNode: _delay,
    ConnectFlowNode: _connect_flow,
    SplitNode: _split,
    WhatsAppFlowNode: send_whatsapp_flow,
}
