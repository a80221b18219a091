"""What entering a node that sends does: a message, a template, a WhatsApp Flow's form.

Each checks what may stop the send (the 24-hour window, a MARKETING template's consent), renders
its placeholders, queues the message in the outbox and waits for the answer when it asks for one.
"""

from __future__ import annotations

from typing import Any

from server.documents import RunDoc
from server.durations import parse_duration
from server.machines.compiler import CompiledFlow
from server.machines.definition import (
    AnsweredNode,
    MessageNode,
    Node,
    SimpleMessageNode,
    TemplateNode,
    WhatsAppFlowNode,
)
from server.machines.interactive_bodies import interactive_body
from server.machines.placeholders import render
from server.machines.turn import ENDED, WAIT, Turn, add_timer, end_run, queue_message, record_step


def wait_for_answer(turn: Turn, run: RunDoc, node: AnsweredNode) -> str:
    if not node.waits:
        return "advance"
    buttons = [] if isinstance(node, WhatsAppFlowNode) else node.buttons
    if isinstance(node, MessageNode):
        buttons = node.choices
    waiting: dict[str, Any] = {"kind": "reply", "node": node.id, "buttons": [b.id for b in buttons]}
    if node.no_reply is not None:
        due = turn.now + parse_duration(node.no_reply.after)
        waiting["timer_id"] = add_timer(turn, run, node.id, "no_reply", due)
        waiting["due_at"] = due
    run["waiting_for"] = waiting
    return WAIT


def window_closed(turn: Turn, run: RunDoc, node: SimpleMessageNode) -> str | None:
    """A simple message due while the 24-hour window is closed: the outcome to follow, or None."""
    if turn.window_open():
        return None
    record_step(
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


def send_message(turn: Turn, compiled: CompiledFlow, run: RunDoc, node: Node) -> str:
    assert isinstance(node, MessageNode)
    closed = window_closed(turn, run, node)
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
    body.update(interactive_body(turn, run, node, warnings))
    message_id = queue_message(turn, run, node.id, body)
    record_step(
        turn, run, node.id, "message_sent", "queued", detail={"message": message_id}, warnings=warnings
    )
    return wait_for_answer(turn, run, node)


def send_template(turn: Turn, compiled: CompiledFlow, run: RunDoc, node: Node) -> str:
    assert isinstance(node, TemplateNode)
    categories = turn.template_categories
    category = categories.get((node.template, node.language)) or categories.get((node.template, ""))
    if category == "MARKETING" and not turn.contact.get("opted_in"):
        # Consent is checked when the run reaches the node, on the contact as it is now.
        record_step(
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
    message_id = queue_message(turn, run, node.id, body)
    record_step(
        turn, run, node.id, "template_sent", "queued", detail={"message": message_id}, warnings=warnings
    )
    return wait_for_answer(turn, run, node)


def flow_token(run: RunDoc, node: WhatsAppFlowNode) -> str:
    """What Meta hands back in the answer (``response_json.flow_token``): which run and node asked."""
    return f"konvo:{run['id']}:{node.id}"


def send_whatsapp_flow(turn: Turn, compiled: CompiledFlow, run: RunDoc, node: Node) -> str:
    assert isinstance(node, WhatsAppFlowNode)
    closed = window_closed(turn, run, node)
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
    message_id = queue_message(turn, run, node.id, body)
    record_step(
        turn, run, node.id, "message_sent", "queued", detail={"message": message_id}, warnings=warnings
    )
    return wait_for_answer(turn, run, node)
