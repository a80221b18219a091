"""The runner over plain flow documents: what entering each node kind does, how replies, timers
and branches move a run, and how a run stops (spin, no path, closed window). No runtime, no store:
a contact document, a compiled flow and a clock reading are all a turn needs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, get_origin

import pytest

from server.documents import ContactDoc, RunDoc
from server.ids import ContactKey
from server.machines import runner
from server.machines.compiler import CompiledFlow, compile_flow
from server.machines.definition import parse_flow
from server.machines.turn import MAX_STEPS_KEPT, Turn, end_run, record_step
from server.segments import matches
from server.store.contacts import new_contact

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
FLOW_ID = "flw_unit"


def flow(*nodes: dict[str, Any], start: str | None = None) -> CompiledFlow:
    first = start if start is not None else (nodes[0]["id"] if nodes else None)
    return compile_flow(parse_flow({"name": "Unit flow", "start": first, "nodes": list(nodes)}))


def contact(last_inbound: datetime | None = NOW - timedelta(minutes=5), **fields: Any) -> dict[str, Any]:
    document = new_contact(ContactKey("ws_unit", "+34600111222"), NOW - timedelta(days=30))
    document["last_inbound_at"] = last_inbound
    return document | fields


def turn(document: dict[str, Any] | None = None, now: datetime = NOW, **extra: Any) -> Turn:
    return Turn(contact=document if document is not None else contact(), now=now, **extra)


def started(compiled: CompiledFlow, t: Turn, trigger: dict[str, Any] | None = None) -> dict[str, Any]:
    run = runner.new_run(t, compiled, FLOW_ID, 1, trigger or {"source": "api"})
    runner.start(t, compiled, run)
    return run


def actions(run: dict[str, Any]) -> list[tuple[str | None, str, str]]:
    return [(s["node"], s["action"], s["outcome"]) for s in run["steps"]]


def later(t: Turn, delta: timedelta) -> Turn:
    """The next turn on the same contact, ``delta`` later (a new turn: nothing entered yet)."""
    return Turn(contact=t.contact, now=t.now + delta, segment_matcher=t.segment_matcher, fields=t.fields)


# --- message nodes and the 24-hour window ------------------------------------------------------


def test_a_message_that_waits_for_nothing_is_sent_rendered_and_the_run_goes_on() -> None:
    compiled = flow(
        {"id": "hello", "type": "message", "text": "Hola {{contact.name}}", "next": "vip"},
        {"id": "vip", "type": "tag", "add": ["greeted"]},
    )
    t = turn(contact(name="Ana"))
    run = started(compiled, t)
    assert [m["text"] for m in t.contact["outbox"]] == ["Hola Ana"]
    assert t.contact["outbox"][0]["to"] == "+34600111222"
    assert t.contact["outbox"][0]["run_id"] == run["id"]
    assert t.contact["tags"] == ["greeted"]
    assert (run["status"], run["end_reason"], run["node"]) == ("completed", "completed", None)
    assert actions(run)[-2:] == [("vip", "tagged", "ok"), (None, "ended", "completed")]


def test_a_missing_placeholder_is_sent_blank_with_a_warning_on_the_step() -> None:
    compiled = flow({"id": "hello", "type": "message", "text": "Hola {{contact.name}}!"})
    t = turn()
    run = started(compiled, t)
    sent = next(s for s in run["steps"] if s["action"] == "message_sent")
    assert t.contact["outbox"][0]["text"] == "Hola !"
    assert sent["warnings"] and "contact.name" in sent["warnings"][0]


@pytest.mark.parametrize(
    ("since_inbound", "sent"),
    [
        (timedelta(hours=24) - SECOND, True),
        (timedelta(hours=24), False),
        (timedelta(hours=24) + SECOND, False),
    ],
)
def test_a_session_message_is_sent_only_inside_24_hours_of_the_last_inbound(
    since_inbound: timedelta, sent: bool
) -> None:
    compiled = flow({"id": "hello", "type": "message", "text": "Hola"})
    t = turn(contact(last_inbound=NOW - since_inbound))
    run = started(compiled, t)
    assert bool(t.contact["outbox"]) is sent
    assert run["status"] == ("completed" if sent else "failed")
    if not sent:
        assert run["end_reason"] == "WINDOW_CLOSED"
        assert ("hello", "message_not_sent", "WINDOW_CLOSED") in actions(run)


def test_a_contact_that_never_wrote_gets_no_session_message_but_on_failure_is_followed() -> None:
    compiled = flow(
        {"id": "hello", "type": "message", "text": "Hola", "on_failure": "fallback"},
        {"id": "fallback", "type": "tag", "add": ["unreachable"]},
    )
    t = turn(contact(last_inbound=None))
    run = started(compiled, t)
    assert t.contact["outbox"] == []
    assert t.contact["tags"] == ["unreachable"]
    assert run["status"] == "completed"


def test_a_template_is_sent_outside_the_window_with_its_params_rendered() -> None:
    compiled = flow(
        {
            "id": "remind",
            "type": "template",
            "template": "cart_reminder",
            "language": "es",
            "params": {"body": ["{{contact.name}}"]},
        }
    )
    t = turn(contact(last_inbound=None, name="Ana"), template_categories={("cart_reminder", "es"): "UTILITY"})
    run = started(compiled, t)
    [message] = t.contact["outbox"]
    assert message["kind"] == "template"
    assert message["template"] == {"name": "cart_reminder", "language": "es", "params": {"body": ["Ana"]}}
    assert run["status"] == "completed"


@pytest.mark.parametrize("category_key", [("promo", "es"), ("promo", "")])
def test_a_marketing_template_needs_the_opt_in(category_key: tuple[str, str]) -> None:
    compiled = flow({"id": "promo", "type": "template", "template": "promo", "language": "es"})
    t = turn(contact(opted_in=False), template_categories={category_key: "MARKETING"})
    run = started(compiled, t)
    assert t.contact["outbox"] == []
    assert (run["status"], run["end_reason"]) == ("failed", "NO_OPT_IN")

    opted = turn(contact(opted_in=True), template_categories={category_key: "MARKETING"})
    run = started(compiled, opted)
    assert len(opted.contact["outbox"]) == 1 and run["status"] == "completed"


# --- replies and buttons -----------------------------------------------------------------------

BUTTONS = (
    {
        "id": "ask",
        "type": "message",
        "text": "¿Talla?",
        "buttons": [
            {"id": "s", "title": "Pequeña", "next": "small"},
            {"id": "l", "title": "Grande", "next": "large"},
        ],
    },
    {"id": "small", "type": "tag", "add": ["small"]},
    {"id": "large", "type": "tag", "add": ["large"]},
)


def test_a_message_with_buttons_sends_them_and_waits() -> None:
    t = turn()
    run = started(flow(*BUTTONS), t)
    [message] = t.contact["outbox"]
    assert message["kind"] == "buttons"
    assert message["buttons"] == [{"id": "s", "title": "Pequeña"}, {"id": "l", "title": "Grande"}]
    assert run["status"] == "waiting"
    assert run["waiting_for"] == {"kind": "reply", "node": "ask", "buttons": ["s", "l"]}
    assert runner.waiting_for_reply(t.contact) is run


@pytest.mark.parametrize(
    ("text", "button", "tag", "reply"),
    [
        (None, "l", "large", "l"),  # a tap
        ("grande", None, "large", "grande"),  # the title typed, any case
        ("1", None, "small", "Pequeña"),  # the button's number stands for its title
        ("2", None, "large", "Grande"),
    ],
)
def test_a_reply_chooses_the_button_by_tap_title_or_number(
    text: str | None, button: str | None, tag: str, reply: str
) -> None:
    compiled = flow(*BUTTONS)
    t = turn()
    run = started(compiled, t)
    answer = later(t, timedelta(minutes=1))
    assert runner.deliver_reply(answer, compiled, run, text, button)
    assert answer.contact["tags"] == [tag]
    assert run["reply"] == reply
    assert run["status"] == "completed"


def test_text_that_matches_no_button_asks_again_once_then_keeps_waiting() -> None:
    compiled = flow(*BUTTONS)
    t = turn()
    run = started(compiled, t)
    first = later(t, timedelta(minutes=1))
    assert not runner.deliver_reply(first, compiled, run, "mediana", None)
    assert len(t.contact["outbox"]) == 2  # the question again, with its buttons
    assert t.contact["outbox"][1]["buttons"] == t.contact["outbox"][0]["buttons"]
    assert run["waiting_for"]["reprompted"] is True
    second = later(first, timedelta(minutes=1))
    assert not runner.deliver_reply(second, compiled, run, "otra", None)
    assert len(t.contact["outbox"]) == 2  # asked again only once
    assert run["status"] == "waiting" and run["node"] == "ask"
    assert actions(run)[-1] == ("ask", "reply_not_understood", "waiting")


def test_on_reply_takes_any_text_and_set_variable_saves_it() -> None:
    compiled = flow(
        {"id": "ask", "type": "message", "text": "¿Email?", "on_reply": "save"},
        {"id": "save", "type": "set_variable", "field": "email", "value": {"from": "reply"}},
    )
    t = turn()
    run = started(compiled, t)
    answer = later(t, timedelta(minutes=1))
    assert runner.deliver_reply(answer, compiled, run, "ana@example.com", None)
    assert t.contact["variables"] == {"email": "ana@example.com"}
    assert run["status"] == "completed"


def test_on_other_takes_text_that_is_no_button() -> None:
    compiled = flow(
        {
            "id": "ask",
            "type": "message",
            "text": "¿Sí?",
            "buttons": [{"id": "y", "title": "Sí", "next": "yes"}],
            "on_other": "other",
        },
        {"id": "yes", "type": "tag", "add": ["yes"]},
        {"id": "other", "type": "tag", "add": ["other"]},
    )
    t = turn()
    run = started(compiled, t)
    assert runner.deliver_reply(later(t, SECOND), compiled, run, "no sé", None)
    assert t.contact["tags"] == ["other"]


def test_a_photo_is_no_answer_and_is_not_answered_with_a_repeat() -> None:
    compiled = flow(*BUTTONS)
    t = turn()
    run = started(compiled, t)
    runner.deliver_other_message(later(t, SECOND), compiled, run, "image")
    assert len(t.contact["outbox"]) == 1
    assert run["status"] == "waiting"
    assert run["steps"][-1]["detail"]["kind"] == "image"


def test_a_reply_to_a_run_at_a_node_that_asks_nothing_moves_nothing() -> None:
    compiled = flow({"id": "wait", "type": "delay", "for": "PT1H"})
    t = turn()
    run = started(compiled, t)
    assert not runner.deliver_reply(later(t, SECOND), compiled, run, "hola", None)
    assert run["node"] == "wait" and run["status"] == "waiting"


# --- timers: no reply and delays ---------------------------------------------------------------


def no_reply_flow() -> CompiledFlow:
    return flow(
        {
            "id": "ask",
            "type": "message",
            "text": "¿Seguimos?",
            "on_reply": "answered",
            "no_reply": {"after": "PT2H", "next": "silent"},
        },
        {"id": "answered", "type": "tag", "add": ["answered"]},
        {"id": "silent", "type": "tag", "add": ["silent"]},
    )


def test_no_reply_sets_a_timer_and_its_firing_takes_the_no_reply_path() -> None:
    compiled = no_reply_flow()
    t = turn()
    run = started(compiled, t)
    [timer] = t.contact["timers"]
    assert timer["due_at"] == NOW + timedelta(hours=2)
    assert (timer["kind"], timer["run_id"], timer["node"]) == ("no_reply", run["id"], "ask")
    assert run["waiting_for"]["timer_id"] == timer["id"]
    fired = later(t, timedelta(hours=2))
    assert runner.apply_timer(fired, compiled, run, timer)
    assert t.contact["tags"] == ["silent"]
    assert t.contact["timers"] == []
    assert run["status"] == "completed"


def test_a_reply_stops_the_no_reply_timer_and_a_stale_timer_does_nothing() -> None:
    compiled = no_reply_flow()
    t = turn()
    run = started(compiled, t)
    [timer] = t.contact["timers"]
    assert runner.deliver_reply(later(t, timedelta(hours=1)), compiled, run, "sí", None)
    assert t.contact["timers"] == []
    steps = len(run["steps"])
    assert not runner.apply_timer(later(t, timedelta(hours=2)), compiled, run, timer)
    assert t.contact["tags"] == ["answered"]
    assert len(run["steps"]) == steps


def test_text_that_is_no_answer_restarts_the_no_reply_time() -> None:
    compiled = flow(
        {
            "id": "ask",
            "type": "template",
            "template": "t",
            "buttons": [{"id": "ok", "title": "OK", "next": None}],
            "no_reply": {"after": "PT2H", "next": None},
        }
    )
    t = turn()
    run = started(compiled, t)
    [old] = t.contact["timers"]
    answer = later(t, timedelta(hours=1))
    assert not runner.deliver_reply(answer, compiled, run, "¿qué?", None)
    [fresh] = t.contact["timers"]
    assert fresh["id"] != old["id"]
    assert fresh["due_at"] == answer.now + timedelta(hours=2)
    assert run["waiting_for"]["timer_id"] == fresh["id"]
    assert len(t.contact["outbox"]) == 1  # a template is never repeated (it may be charged)


def test_a_customer_writing_to_an_agent_restarts_the_no_reply_time() -> None:
    compiled = no_reply_flow()
    t = turn()
    run = started(compiled, t)
    answer = later(t, timedelta(hours=1, minutes=30))
    runner.customer_wrote_to_agent(answer, compiled, run)
    [timer] = t.contact["timers"]
    assert timer["due_at"] == answer.now + timedelta(hours=2)
    assert actions(run)[-1] == ("ask", "reply_held", "ASSIGNED")
    assert run["status"] == "waiting"


def test_a_delay_waits_for_its_duration_then_goes_on() -> None:
    compiled = flow(
        {"id": "pause", "type": "delay", "for": "PT30M", "next": "after"},
        {"id": "after", "type": "tag", "add": ["later"]},
    )
    t = turn()
    run = started(compiled, t)
    [timer] = t.contact["timers"]
    assert (timer["kind"], timer["due_at"]) == ("delay", NOW + timedelta(minutes=30))
    assert run["waiting_for"] == {
        "kind": "timer",
        "node": "pause",
        "timer_id": timer["id"],
        "due_at": timer["due_at"],
    }
    assert t.contact["tags"] == []
    assert runner.apply_timer(later(t, timedelta(minutes=30)), compiled, run, timer)
    assert t.contact["tags"] == ["later"]
    assert run["status"] == "completed"


def test_a_delay_until_a_local_time_is_read_in_the_workspace_time_zone() -> None:
    compiled = flow({"id": "pause", "type": "delay", "until": "2026-11-29T09:00:00"})
    t = turn(timezone="Europe/Madrid")  # UTC+1 in November
    started(compiled, t)
    [timer] = t.contact["timers"]
    assert timer["due_at"] == datetime(2026, 11, 29, 8, 0, tzinfo=UTC)


def test_a_delay_until_a_moment_already_past_goes_on_at_once() -> None:
    compiled = flow(
        {"id": "pause", "type": "delay", "until": "2026-11-28T11:59:59+00:00", "next": "after"},
        {"id": "after", "type": "tag", "add": ["later"]},
    )
    t = turn()
    run = started(compiled, t)
    assert t.contact["timers"] == []
    assert t.contact["tags"] == ["later"]
    assert ("pause", "delay", "passed") in actions(run)


# --- utility nodes -----------------------------------------------------------------------------


def test_opt_in_and_tags_change_the_contact() -> None:
    compiled = flow(
        {"id": "consent", "type": "opt_in", "next": "tags"},
        {"id": "tags", "type": "tag", "add": ["vip", "new"], "remove": ["lead"]},
    )
    t = turn(contact(tags=["lead", "vip"]))
    started(compiled, t)
    assert t.contact["opted_in"] is True
    assert t.contact["tags"] == ["vip", "new"]  # no duplicate, the removed one gone


def test_a_value_that_does_not_fit_the_field_ends_the_run_with_invalid_value() -> None:
    compiled = flow({"id": "save", "type": "set_variable", "field": "age", "value": "many"})
    t = turn(fields={"age": ("NUMBER", [])})
    run = started(compiled, t)
    assert "age" not in t.contact["variables"]
    assert (run["status"], run["end_reason"]) == ("failed", "INVALID_VALUE")


def test_a_value_that_does_not_fit_follows_on_invalid() -> None:
    compiled = flow(
        {"id": "save", "type": "set_variable", "field": "age", "value": "many", "on_invalid": "bad"},
        {"id": "bad", "type": "tag", "add": ["bad_age"]},
    )
    t = turn(fields={"age": ("NUMBER", [])})
    run = started(compiled, t)
    assert t.contact["tags"] == ["bad_age"]
    assert run["status"] == "completed"


def test_an_answer_that_does_not_fit_asks_the_question_again_retries_times() -> None:
    compiled = flow(
        {"id": "ask", "type": "message", "text": "¿Edad?", "on_reply": "save"},
        {"id": "save", "type": "set_variable", "field": "age", "value": {"from": "reply"}, "retries": 1},
    )
    t = turn(fields={"age": ("NUMBER", [])})
    run = started(compiled, t)
    first = later(t, timedelta(minutes=1))
    runner.deliver_reply(first, compiled, run, "muchos", None)
    assert len(t.contact["outbox"]) == 2 and run["status"] == "waiting" and run["node"] == "ask"
    second = later(first, timedelta(minutes=1))
    runner.deliver_reply(second, compiled, run, "tampoco", None)
    assert len(t.contact["outbox"]) == 2
    assert (run["status"], run["end_reason"]) == ("failed", "INVALID_VALUE")


def test_a_number_that_fits_is_saved_typed() -> None:
    compiled = flow(
        {"id": "ask", "type": "message", "text": "¿Edad?", "on_reply": "save"},
        {"id": "save", "type": "set_variable", "field": "age", "value": {"from": "reply"}},
    )
    t = turn(fields={"age": ("NUMBER", [])})
    run = started(compiled, t)
    runner.deliver_reply(later(t, SECOND), compiled, run, "42", None)
    assert t.contact["variables"]["age"] == 42


def test_assign_asks_the_actor_and_resumes_with_the_agent_or_fails_without_one() -> None:
    compiled = flow(
        {"id": "human", "type": "assign", "team": "sales", "next": "done"},
        {"id": "done", "type": "tag", "add": ["assigned"]},
    )
    t = turn()
    run = started(compiled, t)
    [request] = t.assigns
    assert (request.run_id, request.node, request.team, request.strategy) == (
        run["id"],
        "human",
        "sales",
        None,
    )
    assert run["status"] == "waiting" and run["waiting_for"] == {"kind": "assignment", "node": "human"}
    runner.finish_assign(t, compiled, request, {"_id": "agt_1", "email": "ana@shop.example"})
    assert t.contact["assigned_agent"] is not None and t.contact["tags"] == ["assigned"]
    assert run["status"] == "completed"

    nobody = turn()
    run = started(compiled, nobody)
    runner.finish_assign(nobody, compiled, nobody.assigns[0], None, why="everyone is away")
    assert (run["status"], run["end_reason"]) == ("failed", "NO_AGENT_AVAILABLE")
    assert nobody.contact["tags"] == []


def condition_flow() -> CompiledFlow:
    return flow(
        {
            "id": "which",
            "type": "condition",
            "branches": [
                {"name": "VIP", "segment": {"tag": "vip"}, "next": "vip"},
                {"name": "Spain", "segment": {"phone_prefix": "+34"}, "next": "spain"},
            ],
            "otherwise": "rest",
        },
        {"id": "vip", "type": "tag", "add": ["went_vip"]},
        {"id": "spain", "type": "tag", "add": ["went_spain"]},
        {"id": "rest", "type": "tag", "add": ["went_rest"]},
    )


@pytest.mark.parametrize(
    ("fields", "went"),
    [
        ({"tags": ["vip"]}, "went_vip"),  # both branches match: the first one wins
        ({}, "went_spain"),
        ({"phone": "+33600111222"}, "went_rest"),
    ],
)
def test_a_condition_takes_the_first_matching_branch_or_otherwise(fields: dict[str, Any], went: str) -> None:
    t = turn(contact(**fields), segment_matcher=matches)
    run = started(condition_flow(), t)
    assert went in t.contact["tags"]
    assert run["status"] == "completed"


def test_connect_flow_asks_for_the_other_flow_and_completes_this_run() -> None:
    compiled = flow({"id": "next_flow", "type": "connect_flow", "flow": "Follow-up"})
    t = turn()
    run = started(compiled, t, trigger={"source": "webhook", "order": "1001"})
    [request] = t.connects
    assert (request.flow, request.from_run, request.trigger) == ("Follow-up", run["id"], run["trigger"])
    assert (run["status"], run["end_reason"]) == ("completed", "connected")


def split_flow(sticky: bool) -> CompiledFlow:
    return flow(
        {
            "id": "ab",
            "type": "split",
            "sticky": sticky,
            "branches": [{"name": "A", "weight": 0, "next": "a"}, {"name": "B", "weight": 1, "next": "b"}],
        },
        {"id": "a", "type": "tag", "add": ["a"]},
        {"id": "b", "type": "tag", "add": ["b"]},
    )


def test_a_split_never_takes_a_branch_of_weight_zero_and_records_the_branch() -> None:
    t = turn()
    run = started(split_flow(sticky=False), t)
    assert t.contact["tags"] == ["b"]
    assert run["splits"] == [{"node": "ab", "branch": "B"}]
    assert ("ab", "split", "B") in actions(run)


def test_a_sticky_split_gives_a_returning_contact_the_branch_it_had() -> None:
    document = contact()
    first = turn(document)
    started(split_flow(sticky=True), first)
    # The weights change between versions: the contact keeps its branch all the same.
    swapped = flow(
        {
            "id": "ab",
            "type": "split",
            "branches": [{"name": "A", "weight": 1, "next": "a"}, {"name": "B", "weight": 0, "next": "b"}],
        },
        {"id": "a", "type": "tag", "add": ["a"]},
        {"id": "b", "type": "tag", "add": ["b"]},
    )
    again = later(first, timedelta(days=1))
    run = started(swapped, again)
    assert run["splits"] == [{"node": "ab", "branch": "B"}]
    assert run["steps"][1]["detail"]["kept"] is True


def test_a_split_without_branches_fails_with_no_path() -> None:
    t = turn()
    run = started(flow({"id": "ab", "type": "split", "branches": []}), t)
    assert (run["status"], run["end_reason"]) == ("failed", "NO_PATH:split")


# --- errors: spins, failed sends, agents -------------------------------------------------------


def test_a_loop_without_a_wait_is_stopped_as_a_spin() -> None:
    compiled = flow(
        {"id": "a", "type": "tag", "add": ["a"], "next": "b"},
        {"id": "b", "type": "tag", "add": ["b"], "next": "a"},
    )
    t = turn()
    run = started(compiled, t)
    assert (run["status"], run["end_reason"]) == ("failed", "SPIN_LOOP")
    assert actions(run)[-2] == ("a", "spin_stopped", "SPIN_LOOP")
    assert "'a'" in run["steps"][-2]["detail"]["why"]


def test_a_loop_through_a_wait_is_no_spin() -> None:
    compiled = flow(
        {"id": "ask", "type": "message", "text": "¿Algo más?", "on_reply": "count"},
        {"id": "count", "type": "tag", "add": ["asked"], "next": "ask"},
    )
    t = turn()
    run = started(compiled, t)
    for minute in (1, 2, 3):
        runner.deliver_reply(later(t, timedelta(minutes=minute)), compiled, run, "sí", None)
        assert run["status"] == "waiting" and run["node"] == "ask"
    assert len(t.contact["outbox"]) == 4


def test_a_refused_send_follows_on_failure_or_fails_the_run_with_its_code() -> None:
    with_failure = flow(
        {
            "id": "ask",
            "type": "message",
            "text": "Hola",
            "on_reply": None,
            "on_failure": "f",
            "no_reply": {"after": "PT1H"},
        },
        {"id": "f", "type": "tag", "add": ["failed_send"]},
    )
    t = turn()
    run = started(with_failure, t)
    assert runner.send_failed(later(t, SECOND), with_failure, run, "ask", "131026")
    assert t.contact["tags"] == ["failed_send"] and t.contact["timers"] == []

    plain = no_reply_flow()
    t = turn()
    run = started(plain, t)
    assert not runner.send_failed(later(t, SECOND), plain, run, "ask", None)
    assert (run["status"], run["end_reason"]) == ("failed", "SEND_FAILED:UNKNOWN")
    assert t.contact["timers"] == []


def test_a_run_skipped_for_an_agent_never_enters_its_first_node() -> None:
    compiled = flow({"id": "hello", "type": "message", "text": "Hola"})
    t = turn()
    run = runner.new_run(t, compiled, FLOW_ID, 1, {})
    runner.skip_run(t, run, "agt_1")
    assert t.contact["outbox"] == []
    assert (run["status"], run["end_reason"]) == ("cancelled", "CONTACT_WITH_AGENT")


def test_ending_an_ended_run_changes_nothing() -> None:
    t = turn()
    run = started(flow({"id": "tag", "type": "tag"}), t)
    before = (run["status"], run["end_reason"], len(run["steps"]))
    end_run(later(t, SECOND), run, "cancelled", "LATER")
    assert (run["status"], run["end_reason"], len(run["steps"])) == before


def test_a_long_run_keeps_its_first_step_and_counts_the_dropped_ones() -> None:
    t = turn()
    run = started(no_reply_flow(), t)
    for n in range(MAX_STEPS_KEPT + 10):
        record_step(t, run, "ask", "synced", str(n))
    assert len(run["steps"]) == MAX_STEPS_KEPT
    assert run["steps"][0]["action"] == "started"
    assert run["steps"][-1]["outcome"] == str(MAX_STEPS_KEPT + 9)
    assert run["steps_dropped"] == 12  # "started" and "message_sent" came first: 212 steps, 200 kept


# --- the documents' shapes -------------------------------------------------------------------------


def test_a_new_run_has_every_key_its_typed_document_requires_and_no_other() -> None:
    """``RunDoc`` says which keys of a run the code may rely on: a run as ``new_run`` makes it has
    exactly its required keys, and the keys a run gains later are the optional ones. The same for
    the contact: a new one has every key ``ContactDoc`` requires, and a turn adds only keys it lists."""
    compiled = flow(
        {"id": "ask", "type": "message", "text": "¿Talla?", "on_reply": "split"},
        {
            "id": "split",
            "type": "split",
            "branches": [{"name": "A", "weight": 1, "next": None}, {"name": "B", "weight": 1, "next": None}],
        },
    )
    t = turn()
    known = ContactDoc.__required_keys__ | ContactDoc.__optional_keys__
    assert ContactDoc.__required_keys__ <= set(t.contact) <= known
    run = runner.new_run(t, compiled, FLOW_ID, 1, {"source": "api"})
    assert set(run) == RunDoc.__required_keys__
    runner.start(t, compiled, run)
    runner.deliver_reply(later(t, SECOND), compiled, run, "M", None)
    assert run["status"] == "completed" and {"button", "splits"} <= set(run)
    assert set(run) <= RunDoc.__required_keys__ | RunDoc.__optional_keys__
    assert set(t.contact) <= known and {"splits", "outbox"} <= set(t.contact)
    assert isinstance(t.contact["splits"], list)  # sticky A/B assignments: a list, as the type says
    assert get_origin(ContactDoc.__annotations__["splits"]) is list
