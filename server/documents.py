"""The shapes of the contact document and what it carries: its runs, their steps, its timers.

They are stored as plain BSON documents (the contact in ``contacts``, its runs in
``contact["runs"]``, timers in ``contact["timers"]``, steps in ``run["steps"]``); the
``TypedDict``s say which keys the code may rely on, so the machines, the actor and the timer
scheduler agree on them without ``dict[str, Any]``. ``ContactDoc`` lists every key the server
writes to a contact, the actor's and the store's bookkeeping included. Ground floor: the store
loads and commits these shapes and the machines change them, and neither imports the other.

No ``from __future__ import annotations`` here: ``TypedDict`` reads ``NotRequired`` only from
evaluated annotations, and ``__required_keys__`` must be right for the tests that hold the
documents to these shapes.
"""

from datetime import datetime
from typing import Any, NotRequired, Required, TypedDict, cast


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
    """A contact document as the actor loads, changes and commits it: identity, consent, values,
    runs, timers, the messages a turn queues (``outbox``) and the bookkeeping of the actor, the
    inbox, merges and erasure. ``new_contact`` (``server/store/contacts.py``) sets every key but
    those a turn adds later.

    Every stored contact has its id, workspace and version (the commit's compare-and-set needs
    them; ``as_contact`` checks them where a stored document enters the turn); any other key may
    be missing (a document written before the key existed, a tombstone, a store projection), so
    the code reads those with ``get`` unless the turn has just set them.
    """

    _id: Required[str]
    workspace_id: Required[str]
    version: Required[int]
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
    last_release: dict[str, Any]  # who gave the conversation back to the flows, and when
    last_inbound_at: datetime | None
    last_message_at: datetime | None  # the inbox's order (set by the first message either way)
    unread: int  # customer messages the inbox shows as unread
    inbound_channel_id: str | None  # the number the customer last wrote to
    runs: list[RunDoc]
    timers: list[TimerDoc]
    outbox: list[dict[str, Any]]
    outbox_paused_until: datetime  # nothing goes to this contact before then (pair rate)
    external_sync: list[dict[str, Any]]
    splits: list[dict[str, Any]]  # sticky A/B branches given: {flow_id, node, branch, at, run_id}
    applied_events: list[str]  # ids of the latest events applied (the actor's dedupe)
    counts_pending: list[dict[str, Any]]  # flow counters of committed turns not yet counted
    lease_epoch: int  # the shard lease epoch of the last commit (fences a replica that lost it)
    commit_id: str  # tells a batched write whether it landed
    merged_into: str | None  # set on a contact merged into another: its events go there
    merged_at: datetime
    merged_from: list[dict[str, Any]]  # contacts merged into this one
    erased_at: datetime | None  # a tombstone: the contact was erased (and what stays of it)
    erased_by: str | None
    identity_hashes: list[str]
    erased_messages: int
    created_at: datetime
    updated_at: datetime


# What every stored contact holds, and of what type (``as_contact`` checks them).
_CONTACT_REQUIRED: tuple[tuple[str, type], ...] = (("_id", str), ("workspace_id", str), ("version", int))


def as_contact(raw: dict[str, Any]) -> ContactDoc:
    """A contact document read from the store (or unpacked from BSON) as a ``ContactDoc``: the one
    conversion from the raw document, where it enters the actor's turn. It checks the keys every
    stored contact has; the others are optional in the type. The same dict comes back (no copy).
    """
    for name, kind in _CONTACT_REQUIRED:
        if not isinstance(raw.get(name), kind):
            raise ValueError(
                f"stored contact {raw.get('_id')!r}: {name} is {raw.get(name)!r}, expected {kind.__name__}"
            )
    return cast(ContactDoc, raw)
