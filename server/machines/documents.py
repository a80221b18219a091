"""The shapes of the sub-documents a contact carries: its timers and its runs' steps.

They are stored as plain BSON documents inside the contact (``contact["timers"]``,
``run["steps"]``); the ``TypedDict``s say which keys the code may rely on, so the machines, the
actor and the timer scheduler agree on them without ``dict[str, Any]``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NotRequired, TypedDict


class TimerDoc(TypedDict):
    """A timer of the contact, armed in Redis as a job whose id is the timer id.

    ``kind`` is ``no_reply`` or ``delay`` (a run's wait, ``run_id`` and ``node`` set) or ``wake``
    (a held message's time has come: ``run_id`` is None and ``message_id`` names the message).
    """

    id: str
    run_id: str | None
    node: str | None
    kind: str
    due_at: datetime
    message_id: NotRequired[str]


class StepDoc(TypedDict):
    """One line of a run's history: what happened at ``node`` and how it went."""

    node: str | None
    action: str
    at: datetime
    outcome: str
    detail: NotRequired[dict[str, Any]]
    warnings: NotRequired[list[str]]
