"""The reply rules (server/machines/replies.py) as a table, and the runner applying them to plain documents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from server.machines import runner
from server.machines.compiler import compile_flow
from server.machines.definition import parse_flow
from server.machines.replies import Choice, choose, comparable
from server.machines.turn import MAX_STEPS_KEPT, Turn

YES_NO = [("yes", "Sí"), ("no", "No")]
NOW = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("buttons", "text", "button_id", "on_reply", "on_other", "expected"),
    [
        # a tap follows its button, whatever else the node has
        (YES_NO, "Sí", "yes", True, True, Choice("button", "yes", "tap")),
        (YES_NO, None, "no", False, False, Choice("button", "no", "tap")),
        # a typed title: case, accents, punctuation, emoji and spaces do not matter
        (YES_NO, "Sí", None, False, False, Choice("button", "yes", "title")),
        (YES_NO, "si", None, False, False, Choice("button", "yes", "title")),
        (YES_NO, "  SI!! ", None, False, False, Choice("button", "yes", "title")),
        (YES_NO, "¡sí!", None, False, False, Choice("button", "yes", "title")),
        (YES_NO, "👍 Sí.", None, False, False, Choice("button", "yes", "title")),
        (YES_NO, "NO", None, True, False, Choice("button", "no", "title")),
        ([("ship", "Envío a casa")], "envio a CASA", None, False, False, Choice("button", "ship", "title")),
        # its number in the list
        (YES_NO, "1", None, False, False, Choice("button", "yes", "number")),
        (YES_NO, " 2 ", None, True, True, Choice("button", "no", "number")),
        (YES_NO, "2.", None, False, False, Choice("button", "no", "number")),
        (YES_NO, "１", None, False, False, Choice("button", "yes", "number")),  # full-width digit
        # a tap on a button this node does not have is read as its title
        (YES_NO, "No", "old_no", False, False, Choice("button", "no", "title")),
        # anything else: on_reply, else on_other, else nothing
        (YES_NO, "sí, quiero ayuda", None, True, True, Choice("on_reply")),
        (YES_NO, "sí, quiero ayuda", None, False, True, Choice("on_other")),
        (YES_NO, "sí, quiero ayuda", None, False, False, Choice("none")),
        (YES_NO, "3", None, False, True, Choice("on_other")),  # no third button
        (YES_NO, "0", None, False, False, Choice("none")),
        (YES_NO, "¿?", None, True, False, Choice("on_reply")),
        (YES_NO, None, "old_maybe", True, False, Choice("on_reply")),
        ([], "1", None, True, False, Choice("on_reply")),  # numbers mean buttons only when there are some
        ([("a", None)], "a", None, False, True, Choice("on_other")),  # an id is not a title
        # not text at all (a photo, a location): nothing to choose with
        (YES_NO, None, None, True, True, Choice("none")),
    ],
)
def test_reply_rules(
    buttons: list[tuple[str, str | None]],
    text: str | None,
    button_id: str | None,
    on_reply: bool,
    on_other: bool,
    expected: Choice,
) -> None:
    assert choose(buttons, text, button_id, on_reply, on_other) == expected


def test_comparable_is_what_keywords_use_too() -> None:
    from server.machines.keywords import normalize

    assert comparable("¡Hola,  SEÑOR!") == "hola senor" == normalize("¡Hola,  SEÑOR!")
    assert comparable("Ｓí") == "si"


# --- the runner, on plain documents -------------------------------------------------------------


def compiled(*nodes: dict[str, Any], start: str = "ask") -> Any:
    return compile_flow(parse_flow({"name": "Test", "start": start, "nodes": list(nodes)}))


def ask(**extra: Any) -> dict[str, Any]:
    node = {
        "id": "ask",
        "type": "message",
        "text": "¿Te ayudamos?",
        "buttons": [
            {"id": "yes", "title": "Sí", "next": "yes_tag"},
            {"id": "no", "title": "No", "next": None},
        ],
        "no_reply": {"after": "1m", "next": "nudge"},
    }
    return node | extra


TAIL = (
    {"id": "yes_tag", "type": "tag", "add": ["wants-help"], "next": None},
    {"id": "other_tag", "type": "tag", "add": ["other"], "next": None},
    {"id": "reply_tag", "type": "tag", "add": ["replied"], "next": None},
    {"id": "nudge", "type": "message", "text": "¿Sigues ahí?", "next": None},
)


class Contact:
    """A contact document and its flow, stepped turn by turn as the actor would."""

    def __init__(
        self, flow: Any, fields: dict[str, tuple[str, list[str]]] | None = None, **turn: Any
    ) -> None:
        self.flow = flow
        self.fields = fields or {}
        self.extra = turn
        self.now = NOW
        self.document: dict[str, Any] = {
            "phone": "+34600000000",
            "runs": [],
            "timers": [],
            "outbox": [],
            "variables": {},
            "tags": [],
            "last_inbound_at": NOW,
        }

    def turn(self, after: timedelta = timedelta(seconds=1)) -> Turn:
        self.now += after
        self.document["last_inbound_at"] = self.now
        return Turn(self.document, self.now, fields=self.fields, **self.extra)

    def start(self) -> dict[str, Any]:
        turn = self.turn()
        run = runner.new_run(turn, self.flow, "flow_1", 1, {})
        runner.start(turn, self.flow, run)
        return run

    def say(self, run: dict[str, Any], text: str | None = None, button: str | None = None) -> bool:
        return runner.deliver_reply(self.turn(), self.flow, run, text, button)

    def texts(self) -> list[str | None]:
        return [m.get("text") for m in self.document["outbox"]]


def test_typed_title_follows_the_button_and_stops_the_timer() -> None:
    customer = Contact(compiled(ask(), *TAIL))
    run = customer.start()
    assert len(customer.document["timers"]) == 1
    assert customer.say(run, "sí")
    assert run["status"] == "completed" and customer.document["tags"] == ["wants-help"]
    assert customer.document["timers"] == []
    step = next(s for s in run["steps"] if s["action"] == "button")
    assert step["detail"] == {"text": "sí", "button": "yes", "matched_by": "title"}
    assert run["reply"] == "sí" and run["button"] == "yes"


def test_a_number_follows_that_button_and_the_reply_is_its_title() -> None:
    customer = Contact(compiled(ask(), *TAIL))
    run = customer.start()
    assert customer.say(run, "1")
    assert customer.document["tags"] == ["wants-help"]
    assert (run["reply"], run["button"]) == ("Sí", "yes")


@pytest.mark.parametrize(("edge", "tag"), [("on_reply", "replied"), ("on_other", "other")])
def test_other_text_follows_on_reply_or_on_other(edge: str, tag: str) -> None:
    target = "reply_tag" if edge == "on_reply" else "other_tag"
    customer = Contact(compiled(ask(**{edge: target}), *TAIL))
    run = customer.start()
    assert customer.say(run, "sí, quiero ayuda")
    assert customer.document["tags"] == [tag] and run["reply"] == "sí, quiero ayuda"
    assert next(s for s in run["steps"] if s["action"] == "reply")["detail"]["path"] == edge


def test_on_reply_wins_over_on_other() -> None:
    customer = Contact(compiled(ask(on_reply="reply_tag", on_other="other_tag"), *TAIL))
    run = customer.start()
    customer.say(run, "otra cosa")
    assert customer.document["tags"] == ["replied"]


def test_unmatched_text_reprompts_once_then_waits_with_a_fresh_no_reply_time() -> None:
    customer = Contact(compiled(ask(), *TAIL))
    run = customer.start()
    first_timer = customer.document["timers"][0]["id"]

    assert not customer.say(run, "sí, quiero ayuda")
    assert customer.texts() == ["¿Te ayudamos?", "¿Te ayudamos?"]  # asked again, with its buttons
    assert customer.document["outbox"][-1]["buttons"] == [
        {"id": "yes", "title": "Sí"},
        {"id": "no", "title": "No"},
    ]
    assert run["status"] == "waiting" and run["waiting_for"]["reprompted"] is True
    [timer] = customer.document["timers"]
    assert timer["id"] != first_timer and timer["due_at"] == customer.now + timedelta(minutes=1)
    assert run["waiting_for"]["timer_id"] == timer["id"]

    assert not customer.say(run, "¿hola?", None)
    assert customer.texts() == ["¿Te ayudamos?", "¿Te ayudamos?"]  # only once
    [timer] = customer.document["timers"]
    assert timer["due_at"] == customer.now + timedelta(minutes=1)  # counted from the last message
    outcomes = [(s["action"], s["outcome"]) for s in run["steps"] if s["action"] == "reply_not_understood"]
    assert outcomes == [("reply_not_understood", "reprompted"), ("reply_not_understood", "waiting")]
    assert "already asked again once" in run["steps"][-1]["detail"]["why"]

    assert customer.say(run, "2")  # the re-prompt's buttons still answer
    assert run["status"] == "completed" and customer.document["timers"] == []


def test_a_stale_no_reply_timer_does_nothing_after_a_reply() -> None:
    customer = Contact(compiled(ask(), *TAIL))
    run = customer.start()
    old = dict(customer.document["timers"][0])
    customer.say(run, "¿qué?")
    assert not runner.apply_timer(customer.turn(), customer.flow, run, old)
    assert run["node"] == "ask" and not [s for s in run["steps"] if s["action"] == "no_reply"]
    [fresh] = customer.document["timers"]
    assert runner.apply_timer(customer.turn(timedelta(minutes=1)), customer.flow, run, fresh)
    assert customer.texts()[-1] == "¿Sigues ahí?"


def test_a_photo_is_not_an_answer_but_restarts_the_no_reply_time() -> None:
    customer = Contact(compiled(ask(on_reply="reply_tag"), *TAIL))
    run = customer.start()
    runner.deliver_other_message(customer.turn(timedelta(seconds=30)), customer.flow, run, "image")
    assert run["node"] == "ask" and customer.texts() == ["¿Te ayudamos?"]  # no path, no repeat
    [timer] = customer.document["timers"]
    assert timer["due_at"] == customer.now + timedelta(minutes=1)
    assert run["steps"][-1]["detail"]["kind"] == "image"


def test_template_buttons_take_their_titles_from_the_template() -> None:
    node = {
        "id": "ask",
        "type": "template",
        "template": "cart",
        "language": "es",
        "buttons": [{"id": "buy", "next": "yes_tag"}, {"id": "later", "next": "reply_tag"}],
    }
    titles = {("cart", "es"): ["Comprar ahora", "Más tarde"]}
    customer = Contact(compiled(node, *TAIL), template_buttons=titles)
    run = customer.start()
    assert customer.say(run, "mas tarde")
    assert customer.document["tags"] == ["replied"]


def test_a_template_is_not_sent_again_to_reprompt() -> None:
    node = {
        "id": "ask",
        "type": "template",
        "template": "cart",
        "buttons": [{"id": "buy", "next": "yes_tag"}],
    }
    customer = Contact(compiled(node, *TAIL), template_buttons={("cart", "es"): ["Comprar"]})
    run = customer.start()
    assert not customer.say(run, "¿cuánto cuesta?")
    assert len(customer.document["outbox"]) == 1 and run["status"] == "waiting"


# --- invalid values ----------------------------------------------------------------------------

SIZE = {"size": ("FIXED", ["S", "M", "L"])}


def size_flow(**save: Any) -> Any:
    return compiled(
        {"id": "ask", "type": "message", "text": "¿Talla?", "on_reply": "save"},
        {"id": "save", "type": "set_variable", "field": "size", "value": {"from": "reply"}, "next": "done"}
        | save,
        {"id": "done", "type": "message", "text": "Guardado {{contact.size}}", "next": None},
        {"id": "sorry", "type": "message", "text": "No pasa nada", "next": None},
    )


def test_invalid_reply_asks_again_with_the_options_then_ends_invalid_value() -> None:
    customer = Contact(size_flow(), SIZE)
    run = customer.start()
    customer.say(run, "XXL")
    assert customer.texts() == ["¿Talla?", "¿Talla?\n\nS / M / L"] and run["node"] == "ask"
    customer.say(run, "XL")
    customer.say(run, "enorme")
    assert run["status"] == "failed" and run["end_reason"] == "INVALID_VALUE"
    assert customer.document["variables"] == {} and len(customer.texts()) == 3
    attempts = [s["detail"].get("attempt") for s in run["steps"] if s["action"] == "variable_not_set"]
    assert attempts == [1, 2, None]


def test_invalid_reply_then_on_invalid_and_a_valid_one_resets_the_count() -> None:
    customer = Contact(size_flow(on_invalid="sorry", retries=1), SIZE)
    run = customer.start()
    customer.say(run, "XXL")
    customer.say(run, "m")
    assert customer.document["variables"] == {"size": "M"} and customer.texts()[-1] == "Guardado M"
    assert "invalid_tries" not in run or run["invalid_tries"] == {}

    customer = Contact(size_flow(on_invalid="sorry", retries=0), SIZE)
    run = customer.start()
    customer.say(run, "XXL")
    assert customer.texts()[-1] == "No pasa nada" and run["status"] == "completed"


def test_an_empty_reply_is_never_saved() -> None:
    customer = Contact(size_flow(field="city", retries=0), {"city": ("TEXT", [])})
    run = customer.start()
    customer.say(run, "   ")
    assert run["end_reason"] == "INVALID_VALUE" and customer.document["variables"] == {}


# --- long flows, spins, delays, failed sends ----------------------------------------------------


def test_a_500_node_chain_runs_to_its_end_and_keeps_its_first_step() -> None:
    nodes: list[dict[str, Any]] = []
    for i in range(500):
        following = f"n{i + 1}" if i < 499 else None
        if i % 2:
            nodes.append({"id": f"n{i}", "type": "tag", "add": [f"t{i % 7}"], "next": following})
        else:
            nodes.append({"id": f"n{i}", "type": "condition", "branches": [], "otherwise": following})
    customer = Contact(compiled(*nodes, start="n0"))
    run = customer.start()
    assert run["status"] == "completed", run["end_reason"]
    assert len(run["steps"]) == MAX_STEPS_KEPT and run["steps"][0]["action"] == "started"
    assert run["steps"][-1]["action"] == "ended" and run["steps_dropped"] == 502 - MAX_STEPS_KEPT


def test_a_node_entered_twice_in_one_turn_stops_the_run() -> None:
    past = "2020-01-01T00:00"
    flow = compiled(
        {"id": "tag", "type": "tag", "add": ["x"], "next": "wait"},
        {"id": "wait", "type": "delay", "until": past, "next": "tag"},
        start="tag",
    )
    customer = Contact(flow)
    run = customer.start()
    assert (run["status"], run["end_reason"]) == ("failed", "SPIN_LOOP")
    assert [s["action"] for s in run["steps"]] == ["started", "tagged", "delay", "spin_stopped", "ended"]
    assert run["steps"][2]["outcome"] == "passed"
    assert "'tag'" in run["steps"][3]["detail"]["why"]


def test_send_failure_follows_on_failure_or_fails_the_run() -> None:
    customer = Contact(compiled(ask(on_failure="other_tag"), *TAIL))
    run = customer.start()
    assert runner.send_failed(customer.turn(), customer.flow, run, "ask", "131026")
    assert customer.document["tags"] == ["other"] and customer.document["timers"] == []

    customer = Contact(compiled(ask(), *TAIL))
    run = customer.start()
    assert not runner.send_failed(customer.turn(), customer.flow, run, "ask", "131026")
    assert (run["status"], run["end_reason"]) == ("failed", "SEND_FAILED:131026")
    assert customer.document["timers"] == [] and run["waiting_for"] is None
