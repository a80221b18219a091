"""The shapes of the contact document and what it carries: its runs, their steps, its timers.

They are stored as plain BSON documents (the contact in ``contacts``, its runs in
``contact["runs"]``, timers in ``contact["timers"]``, steps in ``run["steps"]``); the
``TypedDict``s say which keys the code may rely on, so the machines, the actor and the timer
scheduler agree on them without ``dict[str, Any]``. ``ContactDoc`` lists the keys the machines
read and write; the store and the actor add their own bookkeeping (``applied_events``,
``inbound_pending``...), which the machines never touch.

No ``from __future__ import annotations`` here: ``TypedDict`` reads ``NotRequired`` only from
evaluated annotations, and ``__required_keys__`` must be right for the tests that hold the
documents to these shapes.
"""

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


class RunDoc(TypedDict):
    """One run of a flow for the contact (``server/machines/runner.py`` makes it, ``new_run``).

    ``status`` is active, waiting, completed, failed or cancelled; ``node`` is where the run is
    (None once it ended at the end of the flow); ``waiting_for`` says what a waiting run waits for
    (``{"kind": "reply" | "timer" | "assignment", "node", "timer_id", "due_at", ...}``).
    """

    id: str
    flow_id: str
    flow_name: str
    version: int
    node: str | None
    status: str
    waiting_for: dict[str, Any] | None
    steps: list[StepDoc]
    trigger: dict[str, Any]
    reply: str | None
    started_at: datetime
    updated_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    channel_id: str | None
    button: NotRequired[str | None]  # the button of the latest answer
    splits: NotRequired[list[dict[str, str]]]  # [{"node", "branch"}] the A/B branches taken
    invalid_tries: NotRequired[dict[str, int]]  # node id -> answers that did not fit so far
    steps_dropped: NotRequired[int]  # steps dropped between the first and the latest kept
    location: NotRequired[dict[str, Any]]  # the latest location shared
    form: NotRequired[dict[str, Any]]  # the latest WhatsApp Flow answer, without its token


class ContactDoc(TypedDict, total=False):
    """A contact as the machines read and change it: identity, consent, values, runs, timers and
    the messages a turn queues (``outbox``). ``new_contact`` (``server/store/contacts.py``) sets
    every key but the optional ones a turn adds later.

    ``Turn.contact`` is still ``dict[str, Any]``: typing it with this reaches through every
    function that takes the working contact (the actor's commands, the send policy, the commit's
    ``TurnResult``), which the actor path's current rework (issue 19) changes anyway.
    """

    _id: str
    workspace_id: str
    phone: str | None
    bsuid: str | None
    parent_bsuid: str | None
    username: str | None
    name: str | None
    tags: list[str]
    variables: dict[str, Any]
    opted_in: bool
    opt_in: dict[str, Any] | None
    opt_out: dict[str, Any] | None
    consent_log: list[dict[str, Any]]
    assigned_agent: str | None
    assignment: dict[str, Any] | None
    last_inbound_at: datetime | None
    runs: list[RunDoc]
    timers: list[TimerDoc]
    outbox: list[dict[str, Any]]
    external_sync: list[dict[str, Any]]
    splits: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime
