"""What a customer's shared location and WhatsApp Flow answer do to the run waiting for them:
values read with their fields' types and saved, or the question asked again.
"""

from __future__ import annotations

from typing import Any

from server.documents import RunDoc
from server.errors import InvalidInput
from server.machines.compiler import CompiledFlow
from server.machines.definition import (
    MessageNode,
    WhatsAppFlowNode,
)
from server.machines.node_entry import enter, follow
from server.machines.send_nodes import flow_token
from server.machines.turn import INVALID_VALUE, Turn, cancel_run_timers, end_run, record_step, save_variables
from server.machines.values import coerce_value


def location_answer(
    turn: Turn, compiled: CompiledFlow, run: RunDoc, node: MessageNode, location: dict[str, Any]
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
    save_variables(turn, run, node.id, saved)
    run["reply"] = location.get("address") or location.get("name") or _coordinates(location)
    run["button"] = None
    run["location"] = location
    cancel_run_timers(turn, run)
    detail = {"location": location, "saved": saved}
    record_step(turn, run, node.id, "location", "ok", detail=detail, warnings=skipped or None)
    turn.answered[run["id"]] = node.id
    follow(turn, compiled, run, node.id, "location")


def _coordinates(location: dict[str, Any]) -> str | None:
    if location.get("latitude") is None or location.get("longitude") is None:
        return None
    return f"{location['latitude']}, {location['longitude']}"


def is_answer_to(run: RunDoc, node: WhatsAppFlowNode, form: dict[str, Any] | None) -> bool:
    """Whether an answer is to this run's form: ours carry the token we sent; others (the sandbox,
    a token Meta reports as ``unused``) are taken as the answer to the form that waits."""
    response = (form or {}).get("response")
    token = response.get("flow_token") if isinstance(response, dict) else None
    return not (isinstance(token, str) and token.startswith("konvo:")) or token == flow_token(run, node)


def form_answer(
    turn: Turn, compiled: CompiledFlow, run: RunDoc, node: WhatsAppFlowNode, form: dict[str, Any]
) -> None:
    """Read each mapped answer with its field's type; all fit -> saved and ``answered``, else re-ask.

    A form field left empty saves nothing (the form itself says which fields are required).
    Nothing of an answer with a value that does not fit is stored.
    """
    cancel_run_timers(turn, run)
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
    save_variables(turn, run, node.id, values)
    record_step(turn, run, node.id, "form_saved", "ok", detail={"answer": answer, "saved": values})
    follow(turn, compiled, run, node.id, "answered")


def _form_invalid(
    turn: Turn,
    compiled: CompiledFlow,
    run: RunDoc,
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
        record_step(turn, run, node.id, "form_not_saved", INVALID_VALUE, detail=detail)
        specs = [turn.fields.get(p["field"] or "") for p in problems]
        fixed = [" / ".join(spec[1]) for spec in specs if spec and spec[0].upper() == "FIXED" and spec[1]]
        if fixed:  # the options of a FIXED field answered wrongly, on a line of their own
            turn.hints[run["id"]] = fixed[0]
        turn.answered.pop(run["id"], None)
        enter(turn, compiled, run, node.id)
        turn.hints.pop(run["id"], None)
        return
    tries.pop(node.id, None)
    record_step(turn, run, node.id, "form_not_saved", INVALID_VALUE, detail=detail)
    if node.on_invalid is not None:
        follow(turn, compiled, run, node.id, "invalid")
        return
    end_run(turn, run, "failed", INVALID_VALUE)
