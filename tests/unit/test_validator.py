"""Flow validator: one case per issue code, a clean flow without issues, and large flows stay fast."""

from __future__ import annotations

import time
from typing import Any

import pytest

from server.machines.catalog import ButtonSummary, Catalog, TemplateSummary
from server.machines.definition import parse_flow
from server.machines.flow_checks.edges import successors
from server.machines.flow_checks.issues import FlowIssue
from server.machines.validator import validate


def quick(text: str) -> dict[str, str]:
    return {"type": "QUICK_REPLY", "text": text}


def catalog(**changes: Any) -> Catalog:
    base: dict[str, Any] = {
        "tags": {"vip": "SUPPORT", "cart-cold": "MARKETING"},
        "fields": {
            "city": ("TEXT", []),
            "age": ("NUMBER", []),
            "size": ("FIXED", ["S", "M", "L"]),
            "club": ("BOOLEAN", []),
            "birthday": ("DATE", []),
        },
        "agents": {"ana@shop.example", "agt_1"},
        "teams": {"support"},
        "templates": {
            "cart_reminder": [
                {
                    "language": "es",
                    "category": "MARKETING",
                    "status": "APPROVED",
                    "buttons": [quick("buy"), quick("later")],
                }
            ],
        },
        "flows": {"Second reminder", "flow_2"},
    }
    merged = base | changes
    merged["templates"] = {
        name: [summary(v) for v in variants] for name, variants in merged["templates"].items()
    }
    for name in ("agents", "teams", "flows"):
        merged[name] = frozenset(merged[name])
    return Catalog(**merged)


def summary(variant: dict[str, Any]) -> TemplateSummary:
    """A template variant written as the test's short dict."""
    return TemplateSummary(
        language=variant["language"],
        category=variant.get("category", "MARKETING"),
        status=variant["status"],
        buttons=tuple(ButtonSummary(b["type"], b.get("text")) for b in variant.get("buttons", [])),
        rejection_reason=variant.get("rejection_reason"),
        components=tuple(variant.get("components") or ()),
        meta_id=variant.get("meta_id"),
    )


def clean_document() -> dict[str, Any]:
    """API.md's example, with a 20 h delay so no window warning applies."""
    return {
        "name": "Abandoned cart",
        "start": "remind",
        "nodes": [
            {
                "id": "remind",
                "type": "template",
                "template": "cart_reminder",
                "language": "es",
                "params": {"body": ["{{contact.first_name}}"]},
                "buttons": [{"id": "buy", "next": "thanks"}, {"id": "later", "next": "wait_day"}],
                "no_reply": {"after": "2h", "next": "tag_cold"},
            },
            {
                "id": "thanks",
                "type": "message",
                "text": "Gracias!",
                "buttons": [{"id": "yes", "title": "Por supuesto!", "next": "optin"}],
                "on_reply": "ask_city",
                "next": None,
            },
            {"id": "optin", "type": "opt_in", "next": "ask_city"},
            {
                "id": "ask_city",
                "type": "message",
                "text": "¿De qué ciudad eres?",
                "on_reply": "save_city",
                "no_reply": {"after": "1d", "next": None},
            },
            {
                "id": "save_city",
                "type": "set_variable",
                "field": "city",
                "value": {"from": "reply"},
                "next": "route",
            },
            {
                "id": "route",
                "type": "condition",
                "branches": [
                    {
                        "name": "VIP",
                        "segment": {"all": [{"tag": "vip"}, {"var": "age", "op": "gte", "value": 18}]},
                        "next": "to_agent",
                    }
                ],
                "otherwise": "tag_cold",
            },
            {"id": "to_agent", "type": "assign", "agent": "ana@shop.example", "next": None},
            {"id": "wait_day", "type": "delay", "for": "20h", "next": "remind_again"},
            {"id": "remind_again", "type": "connect_flow", "flow": "Second reminder"},
            {"id": "tag_cold", "type": "tag", "add": ["cart-cold"], "remove": [], "next": None},
        ],
    }


def flow(*nodes: dict[str, Any], start: str | None = "a", name: str = "Test") -> Any:
    return parse_flow({"name": name, "start": start, "nodes": list(nodes)})


def msg(node_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "message", "text": "hola", **extra}


def codes(issues: list[FlowIssue]) -> list[str]:
    return [i.code for i in issues]


def only(issues: list[FlowIssue], code: str) -> FlowIssue:
    found = [i for i in issues if i.code == code]
    assert len(found) == 1, issues
    return found[0]


# --- clean flows ------------------------------------------------------------------------------


def test_clean_flow_has_no_issues_with_or_without_catalog() -> None:
    definition = parse_flow(clean_document())
    assert validate(definition) == []
    assert validate(definition, catalog()) == []


def test_successors_lists_every_target() -> None:
    definition = parse_flow(clean_document())
    remind = definition.node("remind")
    assert remind is not None
    assert successors(remind) == ["thanks", "wait_day", "tag_cold", None]


# --- structure --------------------------------------------------------------------------------


def test_missing_start() -> None:
    issue = only(validate(flow(msg("a"), start=None)), "MISSING_START")
    assert issue.severity == "ERROR" and issue.node_id is None


def test_unknown_start() -> None:
    issue = only(validate(flow(msg("a"), start="nowhere")), "UNKNOWN_START")
    assert "'nowhere'" in issue.message


def test_empty_flow() -> None:
    assert codes(validate(flow(start=None))) == ["EMPTY_FLOW"]


def test_duplicate_node_id() -> None:
    issue = only(validate(flow(msg("a"), msg("a"))), "DUPLICATE_NODE_ID")
    assert issue.node_id == "a"


@pytest.mark.parametrize(
    ("node", "field"),
    [
        (msg("a", next="ghost"), "next"),
        (msg("a", buttons=[{"id": "b1", "title": "Sí", "next": "ghost"}]), "buttons['b1'].next"),
        (msg("a", on_reply="ghost"), "on_reply"),
        (msg("a", on_other="ghost"), "on_other"),
        (msg("a", no_reply={"after": "1h", "next": "ghost"}), "no_reply.next"),
        (msg("a", on_failure="ghost"), "on_failure"),
        (
            {
                "id": "a",
                "type": "set_variable",
                "field": "age",
                "value": {"from": "reply"},
                "on_invalid": "ghost",
            },
            "on_invalid",
        ),
        (
            {
                "id": "a",
                "type": "condition",
                "branches": [{"name": "B", "segment": {"tag": "x"}, "next": "ghost"}],
            },
            "branches['B'].next",
        ),
        (
            {
                "id": "a",
                "type": "condition",
                "branches": [{"name": "B", "segment": {"tag": "x"}}],
                "otherwise": "ghost",
            },
            "otherwise",
        ),
    ],
)
def test_unknown_next_names_the_field(node: dict[str, Any], field: str) -> None:
    issue = only(validate(flow(node)), "UNKNOWN_NEXT")
    assert issue.node_id == "a" and field in issue.message and "'ghost'" in issue.message


def test_unreachable_node() -> None:
    issue = only(validate(flow(msg("a"), msg("b"))), "UNREACHABLE_NODE")
    assert issue.node_id == "b" and issue.severity == "WARNING"


def test_connect_flow_next_is_never_followed() -> None:
    issues = validate(flow({"id": "a", "type": "connect_flow", "flow": "Other", "next": "b"}, msg("b")))
    assert only(issues, "UNREACHABLE_NODE").node_id == "b"


# --- messages ---------------------------------------------------------------------------------


def test_empty_message() -> None:
    issue = only(validate(flow({"id": "a", "type": "message"})), "EMPTY_MESSAGE")
    assert issue.node_id == "a"


def test_media_message_is_not_empty() -> None:
    node = {"id": "a", "type": "message", "media": {"kind": "image", "url": "https://x/y.png"}}
    assert validate(flow(node)) == []


def test_too_many_buttons() -> None:
    buttons = [{"id": f"b{i}", "title": f"B{i}"} for i in range(11)]
    issue = only(validate(flow(msg("a", buttons=buttons))), "TOO_MANY_BUTTONS")
    assert "11 buttons" in issue.message and "at most 10" in issue.message


def test_four_to_ten_buttons_are_a_list() -> None:
    """The help article: more than 3 buttons show as a list (rows up to 24 characters)."""
    buttons = [{"id": f"b{i}", "title": f"Opción número {i:02d}"} for i in range(10)]
    assert validate(flow(msg("a", buttons=buttons))) == []


def test_button_title_missing() -> None:
    issue = only(validate(flow(msg("a", buttons=[{"id": "b1"}]))), "BUTTON_TITLE_MISSING")
    assert "'b1'" in issue.message


def test_button_title_too_long() -> None:
    issue = only(validate(flow(msg("a", buttons=[{"id": "b1", "title": "x" * 21}]))), "BUTTON_TITLE_TOO_LONG")
    assert "21 characters" in issue.message


def test_button_title_of_twenty_characters_is_fine() -> None:
    assert validate(flow(msg("a", buttons=[{"id": "b1", "title": "x" * 20}]))) == []


def test_duplicate_button_id() -> None:
    buttons = [{"id": "b1", "title": "One"}, {"id": "b1", "title": "Two"}]
    assert only(validate(flow(msg("a", buttons=buttons))), "DUPLICATE_BUTTON_ID").node_id == "a"


# --- loops ------------------------------------------------------------------------------------


def test_spin_loop_names_the_nodes_on_it() -> None:
    issues = validate(
        flow(
            {"id": "a", "type": "tag", "add": ["x"], "next": "b"},
            {
                "id": "b",
                "type": "condition",
                "branches": [{"name": "again", "segment": {"tag": "x"}, "next": "a"}],
                "otherwise": None,
            },
        )
    )
    issue = only(issues, "SPIN_LOOP")
    assert issue.node_id == "a" and "'a' → 'b' → 'a'" in issue.message


def test_self_loop_spins() -> None:
    assert only(validate(flow({"id": "a", "type": "opt_in", "next": "a"})), "SPIN_LOOP").node_id == "a"


def test_one_issue_per_loop() -> None:
    issues = validate(
        flow(
            {"id": "a", "type": "opt_in", "next": "b"},
            {"id": "b", "type": "opt_in", "next": "a"},
            {"id": "c", "type": "opt_in", "next": "d"},
            {"id": "d", "type": "opt_in", "next": "c"},
            start="a",
        )
    )
    assert sorted(i.node_id or "" for i in issues if i.code == "SPIN_LOOP") == ["a", "c"]


def test_loops_through_a_waiting_node_are_fine() -> None:
    delay = validate(
        flow(
            {"id": "a", "type": "delay", "for": "1h", "next": "b"}, {"id": "b", "type": "opt_in", "next": "a"}
        )
    )
    waiting = validate(flow(msg("a", on_reply="b"), {"id": "b", "type": "opt_in", "next": "a"}))
    assert "SPIN_LOOP" not in codes(delay) + codes(waiting)


def test_a_message_that_does_not_wait_can_spin() -> None:
    assert "SPIN_LOOP" in codes(validate(flow(msg("a", next="a"))))


# --- actions and utilities --------------------------------------------------------------------


def test_assign_target_missing() -> None:
    issue = only(validate(flow({"id": "a", "type": "assign"})), "ASSIGN_TARGET_MISSING")
    assert "agent" in issue.message and "team" in issue.message


def test_condition_without_branches() -> None:
    issue = only(
        validate(flow({"id": "a", "type": "condition", "otherwise": None})), "CONDITION_WITHOUT_BRANCHES"
    )
    assert issue.node_id == "a"


def test_invalid_segment() -> None:
    node = {
        "id": "a",
        "type": "condition",
        "branches": [{"name": "Old", "segment": {"var": "age", "op": "older"}}],
    }
    issue = only(validate(flow(node)), "INVALID_SEGMENT")
    assert "'Old'" in issue.message and "operator" in issue.message


@pytest.mark.parametrize("delay", [{"for": "1h", "until": "2026-12-24T10:00"}, {}])
def test_delay_needs_one(delay: dict[str, str]) -> None:
    node = {"id": "a", "type": "delay", **delay}
    assert only(validate(flow(node)), "DELAY_NEEDS_ONE").node_id == "a"


def test_invalid_until() -> None:
    issue = only(validate(flow({"id": "a", "type": "delay", "until": "christmas"})), "INVALID_UNTIL")
    assert "'christmas'" in issue.message


def test_connect_to_self_without_a_wait_is_an_error() -> None:
    issue = only(validate(flow({"id": "a", "type": "connect_flow", "flow": "Test"})), "CONNECT_LOOP")
    assert issue.severity == "ERROR" and issue.node_id == "a"
    assert "'Test' → 'Test'" in issue.message


def test_connect_to_self_after_a_wait_is_a_warning() -> None:
    waits = msg("a", on_reply="b", next=None)
    issue = only(
        validate(flow(waits, {"id": "b", "type": "connect_flow", "flow": "Test"})), "CONNECT_TO_SELF"
    )
    assert issue.severity == "WARNING" and issue.node_id == "b"


def test_connect_to_self_by_id_with_catalog() -> None:
    issues = validate(
        flow({"id": "a", "type": "connect_flow", "flow": "flow_me"}), catalog(flow_id="flow_me")
    )
    assert codes(issues) == ["CONNECT_LOOP"]


def test_a_connection_cycle_through_other_flows_is_named() -> None:
    connects = {"Second reminder": frozenset({"Third"}), "Third": frozenset({"Test"})}
    issues = validate(
        flow({"id": "a", "type": "connect_flow", "flow": "Second reminder"}),
        catalog(connects=connects, flows={"Second reminder", "Third"}),
    )
    issue = only(issues, "CONNECT_LOOP")
    assert issue.severity == "ERROR" and issue.node_id == "a"
    assert "'Test' → 'Second reminder' → 'Third' → 'Test'" in issue.message


def test_a_connection_cycle_with_a_wait_here_or_there_is_fine() -> None:
    waits = msg("a", on_reply="b", next=None)
    go = {"id": "b", "type": "connect_flow", "flow": "Second reminder"}
    cycle = catalog(connects={"Second reminder": frozenset({"Test"})})
    assert validate(flow(waits, go), cycle) == []  # this flow waits before connecting
    assert validate(flow(go, start="b"), catalog()) == []  # the other flow waits (not instant)


def test_instant_connections_stop_at_waits() -> None:
    from server.machines.flow_checks.graph import instant_connections

    document = flow(
        {
            "id": "a",
            "type": "condition",
            "branches": [{"name": "x", "segment": {"tag": "x"}, "next": "b"}],
            "otherwise": "c",
        },
        {"id": "b", "type": "connect_flow", "flow": "B"},
        msg("c", on_reply="d"),
        {"id": "d", "type": "connect_flow", "flow": "D"},
    )
    assert instant_connections(document) == {"B": "b"}


def test_delay_until_in_the_past_is_a_warning_read_in_the_workspace_zone() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 12, 24, 9, 30, tzinfo=UTC)  # 10:30 in Madrid
    madrid = catalog(now=now, timezone="Europe/Madrid")
    past = validate(flow({"id": "a", "type": "delay", "until": "2026-12-24T10:00"}), madrid)
    assert only(past, "DELAY_IN_THE_PAST").severity == "WARNING"
    future = validate(flow({"id": "a", "type": "delay", "until": "2026-12-24T10:00+00:00"}), madrid)
    assert codes(future) == []


def test_on_other_is_drawn_and_followed() -> None:
    from server.machines.compiler import compile_flow, mermaid

    document = flow(msg("a", buttons=[{"id": "y", "title": "Sí", "next": None}], on_other="b"), msg("b"))
    assert validate(document) == []
    assert "-->|other|" in mermaid(compile_flow(document))


# --- window warnings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "wait",
    [
        {"id": "a", "type": "delay", "for": "25h", "next": "m"},
        {"id": "a", "type": "delay", "for": "P2D", "next": "m"},
        {"id": "a", "type": "delay", "until": "2026-12-24T10:00", "next": "m"},
        msg("a", no_reply={"after": "2d", "next": "m"}),
    ],
)
def test_simple_message_after_long_wait(wait: dict[str, Any]) -> None:
    issue = only(validate(flow(wait, msg("m"))), "SIMPLE_MESSAGE_AFTER_LONG_WAIT")
    assert issue.node_id == "m" and issue.severity == "WARNING"


def test_short_wait_or_template_between_needs_no_warning() -> None:
    short = flow({"id": "a", "type": "delay", "for": "24h", "next": "m"}, msg("m"))
    templated = flow(
        {"id": "a", "type": "delay", "for": "3d", "next": "t"},
        {"id": "t", "type": "template", "template": "cart_reminder", "next": "m"},
        msg("m"),
    )
    assert validate(short) == [] and validate(templated) == []


def test_reply_after_long_wait_reopens_the_window() -> None:
    definition = flow(
        {"id": "a", "type": "delay", "for": "3d", "next": "t"},
        {
            "id": "t",
            "type": "template",
            "template": "cart_reminder",
            "no_reply": {"after": "2d", "next": "late"},
            "on_reply": "answer",
        },
        msg("late"),
        msg("answer"),
    )
    assert only(validate(definition), "SIMPLE_MESSAGE_AFTER_LONG_WAIT").node_id == "late"


def test_long_wait_warning_once_per_message() -> None:
    definition = flow(
        {"id": "a", "type": "delay", "for": "3d", "next": "b"},
        {
            "id": "b",
            "type": "condition",
            "branches": [{"name": "x", "segment": {"tag": "vip"}, "next": "m"}],
            "otherwise": "m",
        },
        msg("m"),
    )
    assert codes(validate(definition)).count("SIMPLE_MESSAGE_AFTER_LONG_WAIT") == 1


def test_simple_message_after_webhook_start() -> None:
    definition = flow({"id": "a", "type": "tag", "add": ["vip"], "next": "m"}, msg("m"))
    assert validate(definition, catalog()) == []
    issue = only(
        validate(definition, catalog(starts_from_webhook=True)), "SIMPLE_MESSAGE_AFTER_WEBHOOK_START"
    )
    assert issue.node_id == "m"


def test_webhook_start_with_a_template_first_is_fine() -> None:
    definition = flow({"id": "a", "type": "template", "template": "cart_reminder", "next": "m"}, msg("m"))
    assert validate(definition, catalog(starts_from_webhook=True)) == []


# --- catalog ----------------------------------------------------------------------------------


def test_unknown_template_by_name_and_language() -> None:
    by_name = validate(flow({"id": "a", "type": "template", "template": "nope"}), catalog())
    by_language = validate(
        flow({"id": "a", "type": "template", "template": "cart_reminder", "language": "en"}), catalog()
    )
    assert "'nope'" in only(by_name, "UNKNOWN_TEMPLATE").message
    assert "'en'" in only(by_language, "UNKNOWN_TEMPLATE").message


def test_template_not_approved_is_a_warning() -> None:
    templates = {"cart_reminder": [{"language": "es", "status": "PENDING", "buttons": []}]}
    issue = only(
        validate(
            flow({"id": "a", "type": "template", "template": "cart_reminder"}), catalog(templates=templates)
        ),
        "TEMPLATE_NOT_APPROVED",
    )
    assert issue.severity == "WARNING" and "PENDING" in issue.message


@pytest.mark.parametrize(
    ("buttons", "code"),
    [
        ([quick(f"q{i}") for i in range(11)], "TEMPLATE_TOO_MANY_BUTTONS"),
        ([{"type": "URL", "text": f"u{i}"} for i in range(3)], "TEMPLATE_TOO_MANY_URL_BUTTONS"),
        ([{"type": "PHONE_NUMBER", "text": f"p{i}"} for i in range(2)], "TEMPLATE_TOO_MANY_PHONE_BUTTONS"),
        ([{"type": "COPY_CODE", "text": f"c{i}"} for i in range(2)], "TEMPLATE_TOO_MANY_COPY_CODE_BUTTONS"),
    ],
)
def test_template_button_limits(buttons: list[dict[str, str]], code: str) -> None:
    templates = {"promo": [{"language": "es", "status": "APPROVED", "buttons": buttons}]}
    issues = validate(
        flow({"id": "a", "type": "template", "template": "promo"}), catalog(templates=templates)
    )
    assert codes(issues) == [code]


def test_template_within_button_limits_is_fine() -> None:
    buttons = [
        *(quick(f"q{i}") for i in range(6)),
        {"type": "URL", "text": "u1"},
        {"type": "URL", "text": "u2"},
        {"type": "PHONE_NUMBER", "text": "call"},
        {"type": "COPY_CODE", "text": "code"},
    ]
    templates = {"promo": [{"language": "es", "status": "APPROVED", "buttons": buttons}]}
    assert (
        validate(flow({"id": "a", "type": "template", "template": "promo"}), catalog(templates=templates))
        == []
    )


def test_unknown_template_button() -> None:
    node = {
        "id": "a",
        "type": "template",
        "template": "cart_reminder",
        "buttons": [{"id": "buy"}, {"id": "later"}, {"id": "maybe"}],
    }
    issue = only(validate(flow(node), catalog()), "UNKNOWN_TEMPLATE_BUTTON")
    assert "'maybe'" in issue.message and "has 2" in issue.message


def test_unknown_field_in_set_variable_condition_and_source() -> None:
    issues = validate(
        flow(
            {"id": "a", "type": "set_variable", "field": "colour", "value": "red", "next": "b"},
            {
                "id": "b",
                "type": "set_variable",
                "field": "city",
                "value": {"from": "variable", "var": "town"},
                "next": "c",
            },
            {
                "id": "c",
                "type": "condition",
                "branches": [{"name": "N", "segment": {"not": {"var": "zip", "op": "exists"}}}],
            },
        ),
        catalog(),
    )
    unknown = [i for i in issues if i.code == "UNKNOWN_FIELD"]
    assert [
        (i.node_id, next(n for n in ("colour", "town", "zip") if repr(n) in i.message)) for i in unknown
    ] == [("a", "colour"), ("b", "town"), ("c", "zip")]


def test_unknown_tag_in_tag_node_and_nested_segments() -> None:
    issues = validate(
        flow(
            {"id": "a", "type": "tag", "add": ["new"], "remove": ["old"], "next": "b"},
            {
                "id": "b",
                "type": "condition",
                "branches": [
                    {"name": "N", "segment": {"any": [{"all": [{"not": {"tag": "deep"}}]}, {"tag": "vip"}]}}
                ],
            },
        ),
        catalog(),
    )
    messages = [i.message for i in issues if i.code == "UNKNOWN_TAG"]
    assert len(messages) == 3
    assert all(any(f"'{t}'" in m for m in messages) for t in ("new", "old", "deep"))


def test_unknown_agent_and_team() -> None:
    issues = validate(
        flow(
            {"id": "a", "type": "assign", "agent": "bob@shop.example", "next": "b"},
            {"id": "b", "type": "assign", "team": "sales", "next": "c"},
            {"id": "c", "type": "assign", "agent": "agt_1", "team": "support"},
        ),
        catalog(),
    )
    assert [(i.code, i.node_id) for i in issues] == [("UNKNOWN_AGENT", "a"), ("UNKNOWN_AGENT", "b")]


def test_unknown_flow() -> None:
    issues = validate(flow({"id": "a", "type": "connect_flow", "flow": "Ghost flow"}), catalog())
    assert "'Ghost flow'" in only(issues, "UNKNOWN_FLOW").message
    assert validate(flow({"id": "a", "type": "connect_flow", "flow": "flow_2"}), catalog()) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("age", "many"), ("club", "perhaps"), ("size", "XL"), ("birthday", "someday"), ("age", True)],
)
def test_wrong_value_type(field: str, value: Any) -> None:
    issues = validate(flow({"id": "a", "type": "set_variable", "field": field, "value": value}), catalog())
    issue = only(issues, "WRONG_VALUE_TYPE")
    assert f"{field!r}" in issue.message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("age", 42),
        ("club", True),
        ("size", "M"),
        ("birthday", "2025-01-31"),
        ("city", "Madrid"),
        ("age", "{{trigger.age}}"),
        ("size", {"from": "reply"}),
    ],
)
def test_values_that_fit(field: str, value: Any) -> None:
    assert (
        validate(flow({"id": "a", "type": "set_variable", "field": field, "value": value}), catalog()) == []
    )


def test_no_catalog_skips_catalog_checks() -> None:
    definition = flow(
        {"id": "a", "type": "template", "template": "nope", "next": "b"},
        {"id": "b", "type": "assign", "agent": "nobody"},
    )
    assert validate(definition) == []


# --- scale ------------------------------------------------------------------------------------


def test_large_flow_validates_quickly() -> None:
    count = 3000
    nodes: list[dict[str, Any]] = []
    for i in range(count):
        following = f"n{i + 1}" if i + 1 < count else None
        if i % 3 == 0:
            nodes.append(
                {
                    "id": f"n{i}",
                    "type": "condition",
                    "branches": [{"name": "back", "segment": {"tag": "vip"}, "next": f"n{max(i - 3, 0)}"}],
                    "otherwise": following,
                }
            )
        elif i % 3 == 1:
            nodes.append({"id": f"n{i}", "type": "delay", "for": "2d", "next": following})
        else:
            nodes.append(
                msg(
                    f"n{i}",
                    next=following,
                    no_reply={"after": "3d", "next": following},
                    on_reply=f"n{max(i - 5, 0)}",
                )
            )
    definition = flow(*nodes, start="n0")
    began = time.perf_counter()
    issues = validate(definition, catalog(starts_from_webhook=True))
    assert time.perf_counter() - began < 2.0
    assert "SPIN_LOOP" in codes(issues)  # n0 branches back to itself


def test_on_invalid_path_is_followed() -> None:
    definition = flow(
        {"id": "a", "type": "set_variable", "field": "age", "value": {"from": "reply"}, "on_invalid": "b"},
        {"id": "b", "type": "opt_in", "next": "a"},
    )
    assert codes(validate(definition)) == ["SPIN_LOOP"]  # reachable, and a loop without waiting


def test_agent_emails_match_whatever_their_case() -> None:
    definition = flow({"id": "a", "type": "assign", "agent": "Ana@Shop.Example"})
    assert validate(definition, catalog()) == []
