"""A changed turn's bookkeeping (``TurnLogic.finish``): the version and ``updated_at`` move, the
event joins the applied ids (the latest ``APPLIED_EVENTS_KEPT``: the dedupe window), and only the
latest ``ENDED_RUNS_KEPT`` ended runs stay in the document. Pure: no store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from server.actors.events import MarkRead
from server.actors.turn_logic import APPLIED_EVENTS_KEPT, ENDED_RUNS_KEPT, TurnLogic
from server.documents import RunDoc
from server.ids import ContactKey
from server.machines.turn import Turn
from server.store.contacts import new_contact

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def run(run_id: str, status: str) -> RunDoc:
    return {"id": run_id, "status": status}  # type: ignore[typeddict-item]  # only what finish reads


def test_a_changed_turn_moves_version_and_time_and_keeps_the_latest_applied_ids_and_ended_runs() -> None:
    document = new_contact(ContactKey("ws_unit", "+34600111222"), NOW - timedelta(days=3))
    document["version"] = 7
    document["applied_events"] = [f"old{n}" for n in range(APPLIED_EVENTS_KEPT)]
    ended = [run(f"end{n}", "completed" if n % 2 else "failed") for n in range(ENDED_RUNS_KEPT + 3)]
    active, waiting = run("act", "active"), run("wait", "waiting")
    document["runs"] = [ended[0], active, *ended[1:5], waiting, *ended[5:]]
    turn = Turn(contact=document, now=NOW)

    TurnLogic.finish(None, turn, MarkRead("new"))

    assert document["version"] == 8 and document["updated_at"] == NOW
    assert document["applied_events"] == [f"old{n}" for n in range(1, APPLIED_EVENTS_KEPT)] + ["new"]
    # The three oldest ended runs leave; active and waiting runs stay whatever their age; order kept.
    assert document["runs"] == [active, ended[3], ended[4], waiting, *ended[5:]]


def test_up_to_the_kept_number_of_ended_runs_nothing_is_dropped_and_a_first_event_starts_the_list() -> None:
    document = new_contact(ContactKey("ws_unit", "+34600111222"), NOW - timedelta(days=3))
    del document["applied_events"]  # an older document without the list
    runs = [run(f"end{n}", "completed") for n in range(ENDED_RUNS_KEPT)] + [run("act", "active")]
    document["runs"] = list(runs)
    turn = Turn(contact=document, now=NOW)

    TurnLogic.finish(None, turn, MarkRead("first"))

    assert document["applied_events"] == ["first"] and document["runs"] == runs


def test_only_a_turn_that_queued_a_new_message_moves_the_conversation_up() -> None:
    """``last_message_at`` orders the inbox: a message still waiting in the outbox from an earlier
    turn (held, or not delivered yet) does not move the conversation up again."""
    earlier = NOW - timedelta(hours=2)
    document = new_contact(ContactKey("ws_unit", "+34600111222"), NOW - timedelta(days=3))
    document["last_message_at"] = earlier
    document["outbox"] = [{"id": "msg_waiting"}]  # type: ignore[typeddict-item]  # only what is read
    before = dict(document)
    before["outbox"] = [{"id": "msg_waiting"}]
    TurnLogic.finish(before, Turn(contact=document, now=NOW), MarkRead("read"))  # type: ignore[arg-type]
    assert document["last_message_at"] == earlier

    document["outbox"] = [{"id": "msg_waiting"}, {"id": "msg_new"}]  # type: ignore[typeddict-item]
    TurnLogic.finish(before, Turn(contact=document, now=NOW), MarkRead("answer"))  # type: ignore[arg-type]
    assert document["last_message_at"] == NOW
