"""Checks of one node on its own: where it leads, its texts and buttons, conditions, A/B splits,
delays (and a ``delay until`` already past at the moment of validation), placeholder formats.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from server.channels.whatsapp.message_limits import (
    MAX_BUTTON_ID,
    MAX_BUTTON_TITLE,
    MAX_LIST_ROWS,
    MAX_ROW_ID,
    MAX_ROW_TITLE,
)
from server.clock import as_utc
from server.errors import InvalidInput
from server.machines.definition import (
    AssignNode,
    ConditionNode,
    DelayNode,
    FlowDefinition,
    MessageNode,
    Node,
    SetVariableNode,
    SplitNode,
    TemplateNode,
    WhatsAppFlowNode,
)
from server.machines.flow_checks.edges import labelled_targets
from server.machines.flow_checks.interactive import check_interactive, check_whatsapp_flow, interactive_texts
from server.machines.flow_checks.issues import FlowIssue, error, warning
from server.machines.placeholders import format_problems

MIN_SPLIT_BRANCHES = 2


def check_targets(node: Node, by_id: dict[str, Node]) -> list[FlowIssue]:
    return [
        error(
            node.id,
            "UNKNOWN_NEXT",
            f"node {node.id!r}: {label} leads to {target!r}, which does not exist; "
            f"point it to an existing node id or to null to end the run",
        )
        for label, target in labelled_targets(node)
        if target is not None and target not in by_id
    ]


def check_node(node: Node, flow: FlowDefinition) -> list[FlowIssue]:
    issues: list[FlowIssue] = []
    if isinstance(node, MessageNode | TemplateNode):
        seen: set[str] = set()
        for button in node.choices if isinstance(node, MessageNode) else node.buttons:
            if button.id in seen:
                issues.append(
                    error(
                        node.id,
                        "DUPLICATE_BUTTON_ID",
                        f"node {node.id!r} has two buttons with id {button.id!r}; "
                        f"give each button its own id",
                    )
                )
            seen.add(button.id)
    if isinstance(node, MessageNode):
        issues += _check_message(node)
        issues += check_interactive(node)
    elif isinstance(node, WhatsAppFlowNode):
        issues += check_whatsapp_flow(node)
    elif isinstance(node, TemplateNode) and any(b.description or b.section for b in node.buttons):
        issues.append(
            error(
                node.id,
                "LIST_OPTION_ON_TEMPLATE",
                f"template node {node.id!r}: a button's 'description' and 'section' belong to list "
                f"messages; a template's buttons are its quick replies: remove them",
            )
        )
    elif isinstance(node, AssignNode):
        if not node.agent and not node.team:
            issues.append(
                error(
                    node.id,
                    "ASSIGN_TARGET_MISSING",
                    f"assign node {node.id!r} names no one: set 'agent' (an agent's email or id) or 'team'",
                )
            )
    elif isinstance(node, ConditionNode):
        issues += _check_condition(node)
    elif isinstance(node, DelayNode):
        issues += _check_delay(node)
    elif isinstance(node, SplitNode):
        issues += _check_split(node)
    return issues


def _check_message(node: MessageNode) -> list[FlowIssue]:
    issues: list[FlowIssue] = []
    if not (node.text or "").strip() and node.media is None:
        issues.append(
            error(node.id, "EMPTY_MESSAGE", f"message {node.id!r} has nothing to send: set 'text' or 'media'")
        )
    if len(node.buttons) > MAX_LIST_ROWS:
        issues.append(
            error(
                node.id,
                "TOO_MANY_BUTTONS",
                f"message {node.id!r} has {len(node.buttons)} buttons; WhatsApp shows at most "
                f"{MAX_LIST_ROWS} (more than 3 as a list): remove some or split the question",
            )
        )
    as_list = node.as_list
    longest, longest_id = (MAX_ROW_TITLE, MAX_ROW_ID) if as_list else (MAX_BUTTON_TITLE, MAX_BUTTON_ID)
    what = "row" if as_list else "button"
    for card_number, button in [(None, b) for b in node.buttons] + [
        (i, b) for i, card in enumerate(node.carousel, 1) for b in card.buttons
    ]:
        title = button.title or ""
        where = f"{what} {button.id!r}" if card_number is None else f"card {card_number} button {button.id!r}"
        limit = longest if card_number is None else MAX_BUTTON_TITLE
        if not title.strip():
            issues.append(
                error(
                    node.id,
                    "BUTTON_TITLE_MISSING",
                    f"{where} of message {node.id!r} needs a 'title' (what the customer sees)",
                )
            )
        elif len(title) > limit:
            issues.append(
                error(
                    node.id,
                    "BUTTON_TITLE_TOO_LONG",
                    f"{where} of message {node.id!r} has a title of {len(title)} "
                    f"characters; shorten it to at most {limit}",
                )
            )
        id_limit = longest_id if card_number is None else MAX_BUTTON_ID
        if len(button.id) > id_limit:
            issues.append(
                error(
                    node.id,
                    "BUTTON_ID_TOO_LONG",
                    f"{where} of message {node.id!r}: its id has {len(button.id)} characters; "
                    f"WhatsApp takes at most {id_limit}",
                )
            )
    return issues


def _check_condition(node: ConditionNode) -> list[FlowIssue]:
    from server.segments import validate_segment

    issues: list[FlowIssue] = []
    if not node.branches:
        issues.append(
            error(
                node.id,
                "CONDITION_WITHOUT_BRANCHES",
                f"condition {node.id!r} has no branches: add at least one named segment, "
                f"or replace it with a 'next'",
            )
        )
    for branch in node.branches:
        try:
            validate_segment(branch.segment)
        except InvalidInput as exc:
            issues.append(
                error(
                    node.id,
                    "INVALID_SEGMENT",
                    f"condition {node.id!r}, branch {branch.name!r}: {exc.message}",
                )
            )
    return issues


# --- A/B split --------------------------------------------------------------------------------


def _check_split(node: SplitNode) -> list[FlowIssue]:
    """At least two named branches, names unique (analytics group by them), weights positive."""
    issues: list[FlowIssue] = []
    if len(node.branches) < MIN_SPLIT_BRANCHES:
        issues.append(
            error(
                node.id,
                "SPLIT_NEEDS_BRANCHES",
                f"split {node.id!r} has {len(node.branches)} branch(es): give it at least "
                f"{MIN_SPLIT_BRANCHES}, each with a name, a weight and a next",
            )
        )
    seen: set[str] = set()
    for index, branch in enumerate(node.branches):
        name = branch.name.strip()
        if not name:
            issues.append(
                error(
                    node.id,
                    "SPLIT_BRANCH_NAME_MISSING",
                    f"split {node.id!r}, branch {index + 1}: give it a name (analytics show each "
                    f"branch's results under it), e.g. 'A' or 'discount'",
                )
            )
        elif name.casefold() in seen:
            issues.append(
                error(
                    node.id,
                    "DUPLICATE_BRANCH_NAME",
                    f"split {node.id!r} has two branches called {name!r}; give each its own name",
                )
            )
        seen.add(name.casefold())
        if not math.isfinite(branch.weight) or branch.weight <= 0:
            issues.append(
                error(
                    node.id,
                    "SPLIT_WEIGHT_INVALID",
                    f"split {node.id!r}, branch {name or index + 1!r}: weight {branch.weight!r} must "
                    f"be a number above 0 (weights are relative: 50 and 50, or 1 and 3)",
                )
            )
    return issues


# --- delays -------------------------------------------------------------------------------------


def _check_delay(node: DelayNode) -> list[FlowIssue]:
    if (node.for_ is None) == (node.until is None):
        which = "both" if node.for_ is not None else "neither"
        return [
            error(
                node.id,
                "DELAY_NEEDS_ONE",
                f"delay {node.id!r} has {which} of 'for' and 'until': set exactly one "
                f"('for': '2h', or 'until': '2026-12-24T10:00')",
            )
        ]
    if node.until is not None and _parse_until(node.until) is None:
        return [
            error(
                node.id,
                "INVALID_UNTIL",
                f"delay {node.id!r}: until {node.until!r} is not an ISO-8601 date-time; "
                f"write it like '2026-12-24T10:00' (optionally with an offset such as '+01:00')",
            )
        ]
    return []


def _parse_until(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def delays_in_the_past(flow: FlowDefinition, now: datetime, timezone: str) -> list[FlowIssue]:
    """``delay until`` a moment already past: a run goes straight on (it says so in a step)."""
    issues: list[FlowIssue] = []
    for node in flow.nodes:
        if not isinstance(node, DelayNode) or node.until is None or node.for_ is not None:
            continue
        moment = _parse_until(node.until)
        if moment is None:
            continue  # INVALID_UNTIL says why
        if moment.tzinfo is None:
            try:
                moment = moment.replace(tzinfo=ZoneInfo(timezone))
            except (KeyError, ValueError):
                moment = moment.replace(tzinfo=ZoneInfo("UTC"))
        if as_utc(moment) <= as_utc(now):
            issues.append(
                warning(
                    node.id,
                    "DELAY_IN_THE_PAST",
                    f"delay {node.id!r} waits until {node.until} ({timezone} unless an offset is "
                    f"given), which has already passed: runs will not wait there but go straight "
                    f"on; set a later date or use 'for'",
                )
            )
    return issues


# --- placeholders -------------------------------------------------------------------------------


def check_placeholder_formats(node: Node) -> list[FlowIssue]:
    """A format named in a placeholder ({{contact.birthday|date:long}}) must exist and be well formed."""
    texts: list[str] = []
    if isinstance(node, MessageNode):
        texts += [node.text or "", (node.media.caption or "") if node.media else ""]
        texts += interactive_texts(node)
    elif isinstance(node, WhatsAppFlowNode):
        texts += [node.text, node.cta, *_strings(node.data)]
    elif isinstance(node, TemplateNode):
        texts += list(_strings(node.params))
    elif isinstance(node, SetVariableNode) and isinstance(node.value, str):
        texts.append(node.value)
    return [
        error(node.id, "PLACEHOLDER_FORMAT", f"node {node.id!r}: {problem}")
        for text in texts
        for problem in format_problems(text)
    ]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
