"""A/B split node: validator codes, the weighted deterministic draw, stickiness, the diagram."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from server.ids import ContactKey
from server.machines import runner, splits
from server.machines.compiler import compile_flow, mermaid
from server.machines.definition import SplitBranch, parse_flow
from server.machines.turn import Turn
from server.machines.validator import validate
from server.store.contacts import new_contact

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def split_flow(branches: list[dict[str, Any]], sticky: bool = True) -> dict[str, Any]:
    tags = [{"id": f"tag_{b['name']}", "type": "tag", "add": [b["name"]], "next": None} for b in branches]
    arms = [{**b, "next": b.get("next", f"tag_{b['name']}")} for b in branches]
    return {
        "name": "Offer test",
        "start": "ab",
        "nodes": [{"id": "ab", "type": "split", "sticky": sticky, "branches": arms}, *tags],
    }


def codes(document: dict[str, Any]) -> list[str]:
    return [issue.code for issue in validate(parse_flow(document))]


def test_a_well_formed_split_has_no_issues() -> None:
    assert codes(split_flow([{"name": "A", "weight": 70}, {"name": "B", "weight": 30}])) == []


@pytest.mark.parametrize(
    ("branches", "code"),
    [
        ([{"name": "A"}], "SPLIT_NEEDS_BRANCHES"),
        ([{"name": "A"}, {"name": "a", "next": "tag_A"}], "DUPLICATE_BRANCH_NAME"),
        ([{"name": "A"}, {"name": " ", "next": "tag_A"}], "SPLIT_BRANCH_NAME_MISSING"),
        ([{"name": "A"}, {"name": "B", "weight": 0}], "SPLIT_WEIGHT_INVALID"),
        ([{"name": "A"}, {"name": "B", "weight": -2}], "SPLIT_WEIGHT_INVALID"),
        ([{"name": "A"}, {"name": "B", "weight": float("nan")}], "SPLIT_WEIGHT_INVALID"),
        ([{"name": "A"}, {"name": "B", "next": "ghost"}], "UNKNOWN_NEXT"),
    ],
)
def test_validator_checks_names_weights_and_targets(branches: list[dict[str, Any]], code: str) -> None:
    found = [i for i in validate(parse_flow(split_flow(branches))) if i.code == code]
    assert found and found[0].severity == "ERROR" and found[0].node_id == "ab"


def test_a_split_looping_to_itself_without_a_wait_is_a_spin() -> None:
    document = split_flow([{"name": "A", "next": "ab"}, {"name": "B"}])
    assert "SPIN_LOOP" in codes(document)


def test_pick_follows_the_cumulative_weights() -> None:
    arms = [SplitBranch(name="A", weight=1), SplitBranch(name="B", weight=3)]
    assert [splits.pick(arms, x).name for x in (0.0, 0.2499, 0.25, 0.9999)] == ["A", "A", "B", "B"]


def test_draw_is_a_pure_function_of_its_parts() -> None:
    assert splits.draw("c1", "f", "n", "sticky") == splits.draw("c1", "f", "n", "sticky")
    assert splits.draw("c1", "f", "n", "sticky") != splits.draw("c2", "f", "n", "sticky")
    assert 0.0 <= splits.draw("x") < 1.0


def enter(contact: dict[str, Any], definition: dict[str, Any], now: datetime = NOW) -> dict[str, Any]:
    compiled = compile_flow(parse_flow(definition))
    turn = Turn(contact=contact, now=now)
    run = runner.new_run(turn, compiled, "flow_ab", 1, {})
    runner.start(turn, compiled, run)
    return run


def branch_of(run: dict[str, Any]) -> str:
    [step] = [s for s in run["steps"] if s["action"] == "split"]
    return str(step["outcome"])


def test_weights_are_honoured_over_many_contacts() -> None:
    definition = split_flow([{"name": "A", "weight": 80}, {"name": "B", "weight": 20}])
    counts = Counter(
        branch_of(enter(new_contact(ContactKey("ws", f"+3460{i:07d}"), NOW), definition)) for i in range(4000)
    )
    # 4,000 independent draws at p = 0.8: the standard deviation is ~25, so ±150 is > 5 sigma.
    assert abs(counts["A"] - 3200) < 150 and counts["A"] + counts["B"] == 4000


def test_a_sticky_split_keeps_the_branch_even_after_the_weights_change() -> None:
    contact = new_contact(ContactKey("ws", "+34600000001"), NOW)
    first = enter(contact, split_flow([{"name": "A", "weight": 1}, {"name": "B", "weight": 1}]))
    given = branch_of(first)
    other = "B" if given == "A" else "A"
    only_other = split_flow([{"name": given, "weight": 0.000001}, {"name": other, "weight": 1000}])
    again = enter(contact, only_other, NOW + timedelta(days=3))
    assert branch_of(again) == given
    [step] = [s for s in again["steps"] if s["action"] == "split"]
    assert step["detail"] == {"branch": given, "kept": True, "sticky": True}
    assert again["splits"] == [{"node": "ab", "branch": given}]
    assert [(e["node"], e["branch"]) for e in contact["splits"]] == [("ab", given)]


def test_a_non_sticky_split_draws_again_and_stores_nothing() -> None:
    contact = new_contact(ContactKey("ws", "+34600000002"), NOW)
    definition = split_flow([{"name": "A"}, {"name": "B"}], sticky=False)
    seen = {branch_of(enter(contact, definition, NOW + timedelta(minutes=i))) for i in range(40)}
    assert seen == {"A", "B"} and "splits" not in contact


def test_the_diagram_labels_split_edges_with_name_and_share() -> None:
    definition = split_flow([{"name": "A", "weight": 3}, {"name": "B", "weight": 1}])
    text = mermaid(compile_flow(parse_flow(definition)))
    assert '-->|"A 75%"|' in text and '-->|"B 25%"|' in text  # quoted: "%" is not a plain label
