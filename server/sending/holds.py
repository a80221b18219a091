"""What holding an outbox message does to the contact document (pure, inside the actor's turn).

A held message stays in the outbox with ``not_before`` (effects skip it until then) and a
``hold`` record (why, until when, retries made); a wake timer (kind ``send``) in the contact's
timers brings the actor back at that moment, so the hold is as durable as any delay: it is in
the contact document, armed in Redis after the commit and re-armed by recovery after a restart.

A hold also moves the run's no-reply time: the customer cannot answer a message they have not
received, so a run waiting at the held message's node gets a fresh timer (a new id: the old one,
already armed, finds nothing when it fires) pushed back by the time held. The run gets a step
``message_held`` with the reason (``QUIET_HOURS``, or Meta's code for a retry).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from server.clock import as_utc
from server.documents import ContactDoc, RunDoc, TimerDoc
from server.ids import new_id
from server.machines.turn import Turn, record_step

WAKE = "send"  # timer kind
QUIET_HOURS = "QUIET_HOURS"
PAUSED: Final = "outbox_paused_until"  # nothing goes to this contact before then (pair rate)


def hold(
    turn: Turn,
    message: dict[str, Any],
    until: datetime,
    reason: str,
    detail: dict[str, Any] | None = None,
    attempt: int | None = None,
    whole_contact: bool = False,
) -> None:
    """Keep ``message`` in the outbox until ``until`` and wake the contact then; ``whole_contact``
    (pair rate) also keeps every other message to this customer until then."""
    contact = turn.contact
    message["not_before"] = until
    if whole_contact:
        contact[PAUSED] = until
    record: dict[str, Any] = {"reason": reason, "until": until, "at": turn.now, **(detail or {})}
    if attempt is not None:
        message["retries"] = attempt
    message["hold"] = record
    _drop_wake(contact, message["id"])
    _add_wake(contact, message, until)
    run = _run_of(contact, message)
    if run is None:
        return
    step = {"message": message["id"], "until": until, **(detail or {})}
    if attempt is not None:
        step["attempt"] = attempt
    record_step(turn, run, message.get("node"), "message_held", reason, detail=step)
    _push_back_no_reply(turn, run, message, until)


def release(turn: Turn, message: dict[str, Any], by: str) -> None:
    """Let a held message go now: the customer wrote (inbound event ``by``), so quiet hours no
    longer apply to it."""
    message.pop("not_before", None)
    message["released_by"] = by
    _drop_wake(turn.contact, message["id"])


def wake(turn: Turn, timer: TimerDoc) -> bool:
    """A wake timer fired: drop it; messages whose time has come lose ``not_before``, and one
    still held (a wake that came early: another replica's clock) gets a wake timer again."""
    contact = turn.contact
    contact["timers"] = [t for t in contact.get("timers", []) if t["id"] != timer["id"]]
    if contact.get(PAUSED) is not None and as_utc(contact[PAUSED]) <= turn.now:
        contact.pop(PAUSED, None)
    still_held: set[str] = set()
    for message in contact.get("outbox", []):
        due = message.get("not_before")
        if due is not None and as_utc(due) <= turn.now:
            message.pop("not_before", None)
        elif due is not None:
            still_held.add(message["id"])
    # Wake timers of messages that go now are spent (several held till the same morning wake once).
    contact["timers"] = [
        t for t in contact["timers"] if t.get("kind") != WAKE or t.get("message_id") in still_held
    ]
    woken = {t.get("message_id") for t in contact["timers"] if t.get("kind") == WAKE}
    for message in contact.get("outbox", []):
        if message["id"] in still_held and message["id"] not in woken:
            _add_wake(contact, message, as_utc(message["not_before"]))
    return True


def held(message: dict[str, Any], now: datetime) -> bool:
    due = message.get("not_before")
    return due is not None and as_utc(due) > now


def paused(contact: Mapping[str, Any], now: datetime) -> bool:
    due = contact.get(PAUSED)
    return due is not None and as_utc(due) > now


def waiting(contact: Mapping[str, Any], now: datetime) -> bool:
    """Every message left in the outbox waits for a time to come (nothing to redeliver before)."""
    outbox = contact.get("outbox") or []
    return bool(outbox) and (paused(contact, now) or all(held(m, now) for m in outbox))


def _add_wake(contact: ContactDoc, message: dict[str, Any], until: datetime) -> None:
    timer: TimerDoc = {
        "id": new_id("tmr"),
        "run_id": None,
        "node": message.get("node"),
        "kind": WAKE,
        "due_at": until,
        "message_id": message["id"],
    }
    contact.setdefault("timers", []).append(timer)


def _drop_wake(contact: ContactDoc, message_id: str) -> None:
    contact["timers"] = [
        t
        for t in contact.get("timers", [])
        if not (t.get("kind") == WAKE and t.get("message_id") == message_id)
    ]


def _run_of(contact: ContactDoc, message: dict[str, Any]) -> RunDoc | None:
    run_id = message.get("run_id")
    if not run_id:
        return None
    return next((r for r in contact.get("runs", []) if r["id"] == run_id), None)


def _push_back_no_reply(turn: Turn, run: RunDoc, message: dict[str, Any], until: datetime) -> None:
    waiting = run.get("waiting_for") or {}
    if (
        run.get("status") != "waiting"
        or waiting.get("node") != message.get("node")
        or not waiting.get("timer_id")
    ):
        return
    old = next((t for t in turn.contact.get("timers", []) if t["id"] == waiting["timer_id"]), None)
    if old is None:
        return
    delay = as_utc(until) - turn.now
    if delay.total_seconds() <= 0:
        return
    moved: TimerDoc = {**old, "id": new_id("tmr"), "due_at": as_utc(old["due_at"]) + delay}
    turn.contact["timers"] = [t for t in turn.contact["timers"] if t["id"] != old["id"]] + [moved]
    waiting["timer_id"] = moved["id"]
    waiting["due_at"] = moved["due_at"]
    turn.changed_runs.add(run["id"])
