"""The compiler over plain flow documents: the edges of each node kind, the shared machine as a
step function, the labelled diagram, and the errors a document that cannot be compiled gets."""

from __future__ import annotations

from typing import Any

import pytest

from server.errors import InvalidFlow
from server.machines.compiler import END, CompiledFlow, compile_flow, edge_label, mermaid, node_edges
from server.machines.definition import parse_flow


def compiled(*nodes: dict[str, Any], start: str | None = "first") -> CompiledFlow:
    return compile_flow(parse_flow({"name": "Unit flow", "start": start, "nodes": list(nodes)}))


def edges(node: dict[str, Any]) -> list[tuple[str, str | None]]:
    return node_edges(parse_flow({"name": "f", "nodes": [node]}).nodes[0])


# --- edges of each node kind -------------------------------------------------------------------


def test_a_message_has_an_edge_per_button_reply_other_no_reply_failure_and_next() -> None:
    node = {
        "id": "ask",
        "type": "message",
        "text": "?",
        "buttons": [{"id": "yes", "next": "y"}, {"id": "no"}],
        "on_reply": "r",
        "on_other": "o",
        "no_reply": {"after": "PT1H", "next": "n"},
        "on_failure": "f",
        "next": "after",
    }
    assert edges(node) == [
        ("button__yes", "y"),
        ("button__no", None),
        ("reply", "r"),
        ("other", "o"),
        ("no_reply", "n"),
        ("failed", "f"),
        ("advance", "after"),
    ]


def test_a_plain_message_or_template_has_only_failure_and_next() -> None:
    assert edges({"id": "m", "type": "message", "text": "hi", "next": "x"}) == [
        ("failed", None),
        ("advance", "x"),
    ]
    assert edges({"id": "t", "type": "template", "template": "promo"}) == [
        ("failed", None),
        ("advance", None),
    ]


def test_condition_split_delay_connect_and_set_variable_edges() -> None:
    condition = {
        "id": "c",
        "type": "condition",
        "branches": [
            {"name": "A", "segment": {"tag": "a"}, "next": "a"},
            {"name": "B", "segment": {"tag": "b"}},
        ],
        "otherwise": "z",
    }
    assert edges(condition) == [("branch__0", "a"), ("branch__1", None), ("otherwise", "z")]
    split = {"id": "s", "type": "split", "branches": [{"name": "A", "next": "a"}, {"name": "B", "next": "b"}]}
    assert edges(split) == [("branch__0", "a"), ("branch__1", "b")]  # no "otherwise"
    assert edges({"id": "d", "type": "delay", "for": "PT5M", "next": "x"}) == [("timer", "x")]
    assert edges({"id": "k", "type": "connect_flow", "flow": "Other", "next": "x"}) == [("connect", None)]
    assert edges({"id": "v", "type": "set_variable", "field": "f", "next": "x", "on_invalid": "bad"}) == [
        ("advance", "x"),
        ("invalid", "bad"),
    ]
    assert edges({"id": "v", "type": "set_variable", "field": "f", "next": "x"}) == [("advance", "x")]


@pytest.mark.parametrize(
    "node",
    [
        {"id": "n", "type": "tag", "add": ["x"], "next": "x"},
        {"id": "n", "type": "opt_in", "next": "x"},
        {"id": "n", "type": "assign", "team": "sales", "next": "x"},
    ],
)
def test_utility_nodes_only_advance(node: dict[str, Any]) -> None:
    assert edges(node) == [("advance", "x")]


# --- the machine as a step function ------------------------------------------------------------

FLOW = (
    {
        "id": "first",
        "type": "message",
        "text": "?",
        "buttons": [{"id": "yes", "next": "tagged"}],
        "no_reply": {"after": "PT1H"},
    },
    {"id": "tagged", "type": "tag", "add": ["yes"], "next": "which"},
    {
        "id": "which",
        "type": "condition",
        "branches": [{"name": "VIP", "segment": {"tag": "vip"}, "next": "first"}],
    },
)


@pytest.mark.parametrize(
    ("node", "trigger", "target"),
    [
        ("first", "button__yes", "tagged"),
        ("first", "no_reply", END),  # no next: the run ends
        ("first", "failed", END),
        ("first", "advance", END),
        ("tagged", "advance", "which"),
        ("which", "branch__0", "first"),  # back to an earlier node
        ("which", "otherwise", END),
    ],
)
def test_each_trigger_leads_where_the_document_says(node: str, trigger: str, target: str) -> None:
    assert compiled(*FLOW).step(node, trigger) == target


@pytest.mark.parametrize(
    ("node", "trigger"),
    [
        ("first", "button__no"),  # a button the node does not have
        ("first", "reply"),  # no on_reply
        ("tagged", "button__yes"),  # another node's trigger
        ("which", "branch__1"),
        ("tagged", "no_such_trigger"),
    ],
)
def test_a_trigger_that_does_not_apply_at_a_node_leads_nowhere(node: str, trigger: str) -> None:
    assert compiled(*FLOW).step(node, trigger) is None


def test_the_shared_machine_steps_each_run_from_its_own_node() -> None:
    flow = compiled(*FLOW)
    assert flow.step("first", "button__yes") == "tagged"
    assert flow.step("which", "branch__0") == "first"
    assert flow.step("first", "button__yes") == "tagged"  # not from where the last step left it
    assert flow.step("tagged", "advance") == "which"


def test_the_states_are_the_nodes_and_the_end() -> None:
    flow = compiled(*FLOW)
    assert set(flow.machine.states) == {"first", "tagged", "which", END}
    assert set(flow.nodes) == {"first", "tagged", "which"}
    assert flow.nodes["which"].type == "condition"


def test_a_flow_without_start_or_nodes_compiles_to_the_end_alone() -> None:
    empty = compiled(start=None)
    assert list(empty.machine.states) == [END]
    assert empty.step(END, "advance") is None


# --- the diagram -------------------------------------------------------------------------------


def test_the_diagram_draws_every_node_and_labels_edges_as_people_read_them() -> None:
    flow = compiled(
        {
            "id": "first",
            "type": "message",
            "text": "?",
            "buttons": [{"id": "y", "title": "Sí", "next": "wait"}, {"id": "n", "next": "ab"}],
            "no_reply": {"after": "PT2H", "next": "ab"},
            "on_failure": "other",
        },
        {"id": "wait", "type": "delay", "for": "PT30M", "next": "other"},
        {
            "id": "ab",
            "type": "split",
            "branches": [{"name": "A", "weight": 3, "next": "other"}, {"name": "B", "weight": 1}],
        },
        {"id": "other", "type": "connect_flow", "flow": "Follow-up"},
    )
    text = mermaid(flow)
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    assert "  start --> n0" in lines
    assert "  n0 -->|Sí| n1" in lines  # a button's title
    assert "  n0 -->|n| n2" in lines  # an untitled button: its id
    assert "  n0 -->|no reply in PT2H| n2" in lines
    assert "  n0 -->|send failed| n3" in lines
    assert "  n0 --> n4" in lines  # the plain next (none: the end)
    assert "  n1 -->|after PT30M| n3" in lines
    assert '  n2 -->|"A 75%"| n3' in lines and '  n2 -->|"B 25%"| n4' in lines  # weights as shares
    assert '  f0[["Follow-up"]]' in lines and "  n3 -->|Follow-up| f0" in lines
    assert "  n4((end))" in lines


def test_a_message_without_on_failure_draws_no_failure_edge() -> None:
    flow = compiled({"id": "first", "type": "message", "text": "hi", "next": "t"}, {"id": "t", "type": "tag"})
    lines = mermaid(flow).splitlines()
    assert not any("send failed" in line for line in lines)
    assert "  n0 --> n1" in lines and "  n1 --> n2" in lines


def test_a_template_buttons_untitled_edge_shows_the_templates_quick_reply() -> None:
    flow = compiled(
        {
            "id": "first",
            "type": "template",
            "template": "promo",
            "language": "es",
            "buttons": [{"id": "b0", "next": "t"}, {"id": "b1", "next": "t"}, {"id": "b2", "title": "Mine"}],
        },
        {"id": "t", "type": "tag"},
    )
    lines = mermaid(flow, {("promo", "es"): ["Quiero", "No, gracias"]}).splitlines()
    assert "  n0 -->|Quiero| n1" in lines
    assert '  n0 -->|"No, gracias"| n1' in lines  # a comma is no plain word: quoted
    assert "  n0 -->|Mine| n2" in lines


def test_labels_that_could_break_the_diagram_are_quoted_and_escaped() -> None:
    flow = compiled(
        {
            "id": "first",
            "type": "condition",
            "branches": [{"name": 'Say "hi" <b>', "segment": {"tag": "x"}}],
        },
        {"id": 'odd"id', "type": "tag"},
    )
    text = mermaid(flow)
    assert '|"Say #quot;hi#quot; #lt;b#gt;"|' in text
    assert "odd'id<br/><i>tag</i>" in text  # a quote in a node id cannot close the box
    assert "  n0 -->|otherwise| n2" in text.splitlines()


def test_edge_labels_of_branches_and_delays() -> None:
    flow = compiled(
        {"id": "first", "type": "delay", "until": "2026-12-01T09:00:00"},
        {"id": "c", "type": "condition", "branches": [{"name": "VIP", "segment": {"tag": "vip"}}]},
        {"id": "v", "type": "set_variable", "field": "f", "on_invalid": "c"},
    )
    first, condition, variable = (flow.nodes[n] for n in ("first", "c", "v"))
    assert edge_label(first, "timer", {}) == "at 2026-12-01T09:00:00"
    assert edge_label(condition, "branch__0", {}) == "VIP"
    assert edge_label(condition, "otherwise", {}) == "otherwise"
    assert edge_label(variable, "invalid", {}) == "invalid value"
    assert edge_label(variable, "advance", {}) is None


# --- documents that cannot be compiled ---------------------------------------------------------


@pytest.mark.parametrize(
    ("node", "node_id", "where", "fragment"),
    [
        ({"id": "x", "type": "teleport"}, "x", "node", "unknown node type"),
        ({"id": "x", "type": "delay", "for": "soon"}, "x", "for", ""),
        ({"id": "x", "type": "message", "no_reply": {"after": "1 hour"}}, "x", "no_reply.after", ""),
        ({"id": "x", "type": "message", "buttons": [{"id": ""}]}, "x", "buttons.0.id", "at least 1"),
        ({"id": "x", "type": "template"}, "x", "template", "required"),
        ({"id": "x", "type": "tag", "colour": "red"}, "x", "colour", "not permitted"),
    ],
)
def test_a_node_that_cannot_be_read_is_named_with_its_field(
    node: dict[str, Any], node_id: str, where: str, fragment: str
) -> None:
    with pytest.raises(InvalidFlow) as raised:
        parse_flow({"name": "f", "start": node["id"], "nodes": [node]})
    assert raised.value.node_id == node_id
    assert raised.value.details["field"] == where
    assert raised.value.message.startswith(f"node {node_id!r}: {where}: ")
    assert fragment in raised.value.message


def test_a_document_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(InvalidFlow, match="JSON object"):
        parse_flow(["not", "a", "flow"])
