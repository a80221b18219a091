"""What a status report of an outbound message does to the run that sent it (pure, like runner.py).

Every report becomes a ``message_status`` step on the sending node. A ``failed`` one (final:
Meta's error codes, a paused or disabled template...) moves a run still at that node down the
node's ``on_failure`` path, or fails the run with ``SEND_FAILED:<code>``: a run never waits for
an answer to a message the customer did not get. A run that has moved on keeps the step as the
record of the failure.
"""

from __future__ import annotations

from typing import Any

from server.documents import ContactDoc, RunDoc
from server.machines import runner
from server.machines.compiler import CompiledFlow
from server.machines.definition import AnsweredNode
from server.machines.turn import ACTIVE, Turn, record_step

SEND_ACTIONS = ("message_sent", "template_sent")


def sender_of(contact: ContactDoc, message_id: str) -> tuple[RunDoc, str] | None:
    """The run and node that queued ``message_id`` (found by its send step), newest runs first."""
    for run in reversed(contact.get("runs", [])):
        for step in reversed(run.get("steps", [])):
            if step.get("action") in SEND_ACTIONS and (step.get("detail") or {}).get("message") == message_id:
                return run, step["node"]
    return None


def apply_status(
    turn: Turn,
    compiled: CompiledFlow,
    run: RunDoc,
    node_id: str,
    message_id: str,
    status: str,
    error_code: str | None = None,
    error: str | None = None,
    error_title: str | None = None,
) -> bool:
    """Record the status on ``run``; True when a failure moved the run to ``on_failure``."""
    detail: dict[str, Any] = {"message": message_id}
    if error_code is not None:
        detail["error_code"] = error_code
    if error_title is not None:
        detail["error_title"] = error_title
    if error is not None:
        detail["error"] = error
    record_step(turn, run, node_id, "message_status", status, detail=detail)
    if status != "failed":
        return False
    node = compiled.nodes.get(node_id)
    at_node = run["status"] in ACTIVE and run.get("node") == node_id
    if not at_node or not isinstance(node, AnsweredNode):
        return False
    return runner.send_failed(turn, compiled, run, node_id, error_code)
