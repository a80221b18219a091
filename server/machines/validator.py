"""Static checks of a flow definition; ERRORs block publishing, WARNINGs are advice.

``validate(flow)`` checks the document on its own (graph, messages, delays, loops, the 24-hour
window); ``validate(flow, catalog)`` also checks every name the flow uses against what the
workspace has (templates, fields, tags, agents, teams, flows, the flows other flows connect to
without waiting) and delays against the moment of validation. Graph walks are linear in the
number of nodes and edges, so flows with hundreds of nodes validate quickly.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from server.channels.whatsapp.message_limits import (
    CAROUSEL_MEDIA,
    HEADER_MEDIA,
    MAX_BUTTON_ID,
    MAX_BUTTON_TITLE,
    MAX_CARD_BODY,
    MAX_CARD_BODY_LINE_BREAKS,
    MAX_CARD_REPLIES,
    MAX_CAROUSEL_CARDS,
    MAX_FLOW_CTA,
    MAX_INTERACTIVE_BODY,
    MAX_LINK_TITLE,
    MAX_LIST_BUTTON,
    MAX_LIST_ROWS,
    MAX_ROW_DESCRIPTION,
    MAX_ROW_ID,
    MAX_ROW_TITLE,
    MAX_SECTION_TITLE,
    MIN_CAROUSEL_CARDS,
)
from server.channels.whatsapp.template_message import resolve_template
from server.clock import as_utc
from server.durations import parse_duration
from server.errors import InvalidInput
from server.machines.catalog import Catalog, TemplateSummary
from server.machines.compiler import node_edges
from server.machines.definition import (
    AnsweredNode,
    AssignNode,
    ConditionNode,
    ConnectFlowNode,
    DelayNode,
    FlowDefinition,
    MessageNode,
    Node,
    SetVariableNode,
    SimpleMessageNode,
    SplitNode,
    TagNode,
    TemplateNode,
    WhatsAppFlowNode,
)
from server.machines.flow_walk import segment_names
from server.machines.placeholders import format_problems
from server.machines.values import coerce_value
from server.window import WINDOW

Severity = Literal["ERROR", "WARNING"]
MAX_TEMPLATE_BUTTONS = 10
MAX_TEMPLATE_URL_BUTTONS = 2
MAX_TEMPLATE_PHONE_BUTTONS = 1
MAX_TEMPLATE_COPY_CODE_BUTTONS = 1
MIN_SPLIT_BRANCHES = 2
SENDABLE_STATUSES = ("APPROVED", "FLAGGED")  # FLAGGED: a quality warning, still sent

# Bits of the window state carried along graph walks: why a simple message may find it closed.
_AFTER_WEBHOOK = 1
_AFTER_LONG_WAIT = 2


@dataclass(frozen=True)
class FlowIssue:
    node_id: str | None
    severity: Severity
    code: str
    message: str


# --- edges -----------------------------------------------------------------------------------


def labelled_targets(node: Node) -> list[tuple[str, str | None]]:
    """Every reference to another node, with the field that holds it (for messages)."""
    targets: list[tuple[str, str | None]] = []
    if isinstance(node, WhatsAppFlowNode):
        return _whatsapp_flow_targets(node)
    if isinstance(node, MessageNode | TemplateNode):
        targets += [(f"buttons[{b.id!r}].next", b.next) for b in node.buttons]
        if isinstance(node, MessageNode):
            targets += _interactive_targets(node)
        if node.on_reply is not None:
            targets.append(("on_reply", node.on_reply))
        if node.on_other is not None:
            targets.append(("on_other", node.on_other))
        if node.no_reply is not None:
            targets.append(("no_reply.next", node.no_reply.next))
        if node.on_failure is not None:
            targets.append(("on_failure", node.on_failure))
    if isinstance(node, ConditionNode):
        targets += [(f"branches[{b.name!r}].next", b.next) for b in node.branches]
        targets.append(("otherwise", node.otherwise))
    elif isinstance(node, SplitNode):
        targets += [(f"branches[{b.name!r}].next", b.next) for b in node.branches]
    else:
        targets.append(("next", node.next))
    if isinstance(node, SetVariableNode) and node.on_invalid is not None:
        targets.append(("on_invalid", node.on_invalid))
    return targets


def successors(node: Node) -> list[str | None]:
    """Every node id this node can lead to (``None`` ends the run)."""
    return [target for _, target in labelled_targets(node)]


def _runtime_edges(node: Node) -> list[tuple[str, str]]:
    """The (trigger, target) moves a run can really make from ``node``: the compiler's own edges.

    Button triggers are folded to ``button``; moves that end the run (target None) are dropped,
    so ``connect_flow`` (which leaves the run) has none.
    """
    return [
        ("button" if trigger.startswith("button__") else trigger, target)
        for trigger, target in node_edges(node)
        if target is not None
    ]


def _waits(node: Node) -> bool:
    """A node that stops the run until time passes or the customer answers."""
    if isinstance(node, DelayNode):
        return True
    return isinstance(node, AnsweredNode) and node.waits


# --- entry point -----------------------------------------------------------------------------


def validate(flow: FlowDefinition, catalog: Catalog | None = None) -> list[FlowIssue]:
    """Every problem of ``flow``; catalog checks run only when ``catalog`` is given."""
    issues: list[FlowIssue] = []
    by_id: dict[str, Node] = {}
    for node in flow.nodes:
        if node.id in by_id:
            issues.append(
                _error(
                    node.id,
                    "DUPLICATE_NODE_ID",
                    f"two nodes are called {node.id!r}; rename one so node ids are unique",
                )
            )
        else:
            by_id[node.id] = node
    if not flow.nodes:
        issues.append(_error(None, "EMPTY_FLOW", "the flow has no nodes: add at least one and set 'start'"))
        return issues
    if flow.start is None:
        issues.append(
            _error(None, "MISSING_START", "the flow has no start: set 'start' to the id of its first node")
        )
    elif flow.start not in by_id:
        issues.append(
            _error(
                None,
                "UNKNOWN_START",
                f"start points to {flow.start!r}, which is not a node of this flow; "
                f"set 'start' to one of its node ids",
            )
        )
    for node in flow.nodes:
        issues += _check_targets(node, by_id)
        issues += _check_node(node, flow)
        issues += _check_placeholder_formats(node)
        if catalog is not None:
            issues += _check_catalog(node, flow, catalog)
    issues += _spin_loops(flow, by_id)
    issues += _connect_loops(flow, by_id, catalog)
    if catalog is not None and catalog.now is not None:
        issues += _delays_in_the_past(flow, catalog.now, catalog.timezone or "UTC")
    if flow.start in by_id:
        reachable = _reachable(flow.start, by_id)
        for node in flow.nodes:
            if node.id not in reachable:
                issues.append(
                    _warning(
                        node.id,
                        "UNREACHABLE_NODE",
                        f"node {node.id!r} cannot be reached from the start; "
                        f"point a 'next' or a branch to it, or delete it",
                    )
                )
        webhook = catalog is not None and catalog.starts_from_webhook
        issues += _window_warnings(flow.start, by_id, webhook)
    return issues


def _error(node_id: str | None, code: str, message: str) -> FlowIssue:
    return FlowIssue(node_id, "ERROR", code, message)


def _warning(node_id: str | None, code: str, message: str) -> FlowIssue:
    return FlowIssue(node_id, "WARNING", code, message)


# --- per-node checks -------------------------------------------------------------------------


def _check_targets(node: Node, by_id: dict[str, Node]) -> list[FlowIssue]:
    return [
        _error(
            node.id,
            "UNKNOWN_NEXT",
            f"node {node.id!r}: {label} leads to {target!r}, which does not exist; "
            f"point it to an existing node id or to null to end the run",
        )
        for label, target in labelled_targets(node)
        if target is not None and target not in by_id
    ]


def _check_node(node: Node, flow: FlowDefinition) -> list[FlowIssue]:
    issues: list[FlowIssue] = []
    if isinstance(node, MessageNode | TemplateNode):
        seen: set[str] = set()
        for button in node.choices if isinstance(node, MessageNode) else node.buttons:
            if button.id in seen:
                issues.append(
                    _error(
                        node.id,
                        "DUPLICATE_BUTTON_ID",
                        f"node {node.id!r} has two buttons with id {button.id!r}; "
                        f"give each button its own id",
                    )
                )
            seen.add(button.id)
    if isinstance(node, MessageNode):
        issues += _check_message(node)
        issues += _check_interactive(node)
    elif isinstance(node, WhatsAppFlowNode):
        issues += _check_whatsapp_flow(node)
    elif isinstance(node, TemplateNode) and any(b.description or b.section for b in node.buttons):
        issues.append(
            _error(
                node.id,
                "LIST_OPTION_ON_TEMPLATE",
                f"template node {node.id!r}: a button's 'description' and 'section' belong to list "
                f"messages; a template's buttons are its quick replies: remove them",
            )
        )
    elif isinstance(node, AssignNode):
        if not node.agent and not node.team:
            issues.append(
                _error(
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
            _error(
                node.id, "EMPTY_MESSAGE", f"message {node.id!r} has nothing to send: set 'text' or 'media'"
            )
        )
    if len(node.buttons) > MAX_LIST_ROWS:
        issues.append(
            _error(
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
                _error(
                    node.id,
                    "BUTTON_TITLE_MISSING",
                    f"{where} of message {node.id!r} needs a 'title' (what the customer sees)",
                )
            )
        elif len(title) > limit:
            issues.append(
                _error(
                    node.id,
                    "BUTTON_TITLE_TOO_LONG",
                    f"{where} of message {node.id!r} has a title of {len(title)} "
                    f"characters; shorten it to at most {limit}",
                )
            )
        id_limit = longest_id if card_number is None else MAX_BUTTON_ID
        if len(button.id) > id_limit:
            issues.append(
                _error(
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
            _error(
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
                _error(
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
            _error(
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
                _error(
                    node.id,
                    "SPLIT_BRANCH_NAME_MISSING",
                    f"split {node.id!r}, branch {index + 1}: give it a name (analytics show each "
                    f"branch's results under it), e.g. 'A' or 'discount'",
                )
            )
        elif name.casefold() in seen:
            issues.append(
                _error(
                    node.id,
                    "DUPLICATE_BRANCH_NAME",
                    f"split {node.id!r} has two branches called {name!r}; give each its own name",
                )
            )
        seen.add(name.casefold())
        if not math.isfinite(branch.weight) or branch.weight <= 0:
            issues.append(
                _error(
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
            _error(
                node.id,
                "DELAY_NEEDS_ONE",
                f"delay {node.id!r} has {which} of 'for' and 'until': set exactly one "
                f"('for': '2h', or 'until': '2026-12-24T10:00')",
            )
        ]
    if node.until is not None and _parse_until(node.until) is None:
        return [
            _error(
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


def _delays_in_the_past(flow: FlowDefinition, now: datetime, timezone: str) -> list[FlowIssue]:
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
                _warning(
                    node.id,
                    "DELAY_IN_THE_PAST",
                    f"delay {node.id!r} waits until {node.until} ({timezone} unless an offset is "
                    f"given), which has already passed: runs will not wait there but go straight "
                    f"on; set a later date or use 'for'",
                )
            )
    return issues


def _connect_to_self(node: ConnectFlowNode) -> FlowIssue:
    return _warning(
        node.id,
        "CONNECT_TO_SELF",
        f"connect_flow {node.id!r} restarts this same flow after a wait; that is allowed but "
        f"loops as long as the customer keeps going round — check that is what you want",
    )


# --- interactive messages and WhatsApp Flows (docs/flows.md "Interactive messages") ----------


def _interactive_targets(node: MessageNode) -> list[tuple[str, str | None]]:
    targets: list[tuple[str, str | None]] = [
        (f"carousel[{i}].buttons[{b.id!r}].next", b.next)
        for i, card in enumerate(node.carousel)
        for b in card.buttons
    ]
    if node.location_request is not None:
        targets.append(("location_request.next", node.location_request.next))
    return targets


def _whatsapp_flow_targets(node: WhatsAppFlowNode) -> list[tuple[str, str | None]]:
    targets: list[tuple[str, str | None]] = [("next", node.next)]
    if node.on_other is not None:
        targets.append(("on_other", node.on_other))
    if node.no_reply is not None:
        targets.append(("no_reply.next", node.no_reply.next))
    if node.on_failure is not None:
        targets.append(("on_failure", node.on_failure))
    if node.on_invalid is not None:
        targets.append(("on_invalid", node.on_invalid))
    return targets


def _interactive_texts(node: MessageNode) -> list[str]:
    """The node's texts that take placeholders beyond its text and caption."""
    texts = [node.list_button or ""]
    links = [node.link] + [card.link for card in node.carousel]
    texts += [part for link in links if link is not None for part in (link.title, link.url)]
    texts += [card.text or "" for card in node.carousel]
    return texts


def _interactive_kinds(node: MessageNode) -> list[str]:
    present = (
        ("buttons", bool(node.buttons)),
        ("link", node.link is not None),
        ("location_request", node.location_request is not None),
        ("carousel", bool(node.carousel)),
    )
    return [name for name, there in present if there]


def _check_interactive(node: MessageNode) -> list[FlowIssue]:
    """WhatsApp's rules for lists, links, location requests and carousels, named on the node."""
    issues: list[FlowIssue] = []
    label = f"message {node.id!r}"
    kinds = _interactive_kinds(node)
    if len(kinds) > 1:
        issues.append(
            _error(
                node.id,
                "INTERACTIVE_CONFLICT",
                f"{label} has {' and '.join(kinds)}; WhatsApp sends one kind of interactive message "
                f"at a time: keep one, or split it into two messages",
            )
        )
    needs_text = node.as_list or node.link is not None or node.location_request is not None or node.carousel
    what = "list" if node.as_list else kinds[0] if kinds else "buttons"
    if needs_text and not (node.text or "").strip():
        issues.append(
            _error(
                node.id,
                "INTERACTIVE_TEXT_MISSING",
                f"{label} needs a 'text': WhatsApp shows it above its {what}",
            )
        )
    if (kinds or node.as_list) and len(node.text or "") > MAX_INTERACTIVE_BODY:
        issues.append(
            _error(
                node.id,
                "INTERACTIVE_TEXT_TOO_LONG",
                f"{label} has a text of {len(node.text or '')} characters; with {what} WhatsApp "
                f"takes at most {MAX_INTERACTIVE_BODY}",
            )
        )
    issues += _check_interactive_media(node, label)
    if node.as_list:
        issues += _check_list(node, label)
    if node.link is not None:
        issues += _check_link(node.id, f"{label}: link", node.link.title, node.link.url)
    if node.carousel:
        issues += _check_carousel(node, label)
    return issues


def _check_interactive_media(node: MessageNode, label: str) -> list[FlowIssue]:
    if node.media is None:
        return []
    if node.as_list or node.location_request is not None or node.carousel:
        what = "a list" if node.as_list else "a location request" if node.location_request else "a carousel"
        where = "on its cards" if node.carousel else "in a message of its own before it"
        return [
            _error(
                node.id,
                "INTERACTIVE_MEDIA",
                f"{label} is sent as {what}, which cannot show 'media': put the {node.media.kind} {where}",
            )
        ]
    if (node.buttons or node.link is not None) and node.media.kind not in HEADER_MEDIA:
        return [
            _error(
                node.id,
                "INTERACTIVE_MEDIA",
                f"{label} can show an image, video or document above its buttons or link, not "
                f"{node.media.kind}: send the {node.media.kind} in a message of its own",
            )
        ]
    return []


def _check_list(node: MessageNode, label: str) -> list[FlowIssue]:
    issues: list[FlowIssue] = []
    if not node.buttons:
        issues.append(
            _error(
                node.id,
                "LIST_WITHOUT_ROWS",
                f"{label} sets list_button but has no buttons: add the rows as 'buttons', or "
                f"remove list_button",
            )
        )
    button = node.list_button
    if button is not None and (not button.strip() or len(button) > MAX_LIST_BUTTON):
        issues.append(
            _error(
                node.id,
                "LIST_BUTTON_TOO_LONG",
                f"{label}: list_button {button!r} must be 1-{MAX_LIST_BUTTON} characters (the "
                f"button that opens the list)",
            )
        )
    for row in node.buttons:
        if row.description is not None and len(row.description) > MAX_ROW_DESCRIPTION:
            issues.append(
                _error(
                    node.id,
                    "ROW_DESCRIPTION_TOO_LONG",
                    f"{label}: row {row.id!r} has a description of {len(row.description)} characters; "
                    f"shorten it to at most {MAX_ROW_DESCRIPTION}",
                )
            )
    sections = [row.section for row in node.buttons]
    for section in dict.fromkeys(s for s in sections if s is not None):
        if not section.strip() or len(section) > MAX_SECTION_TITLE:
            issues.append(
                _error(
                    node.id,
                    "SECTION_TITLE_TOO_LONG",
                    f"{label}: section {section!r} has {len(section)} characters; a section title is "
                    f"1-{MAX_SECTION_TITLE}",
                )
            )
    if any(sections) and not all(sections):
        unsectioned = ", ".join(repr(r.id) for r in node.buttons if not r.section)
        issues.append(
            _error(
                node.id,
                "SECTION_MISSING",
                f"{label}: rows {unsectioned} have no 'section' while others do; in a list with "
                f"sections every row is in one",
            )
        )
    runs = [name for i, name in enumerate(sections) if name and (i == 0 or sections[i - 1] != name)]
    split = sorted({name for name in runs if runs.count(name) > 1})
    if split:
        issues.append(
            _error(
                node.id,
                "SECTION_SPLIT",
                f"{label}: the rows of section(s) {', '.join(repr(n) for n in split)} are not next to "
                f"each other; WhatsApp shows a section's rows together, so put them together (the "
                f"numbers customers type follow the order shown)",
            )
        )
    return issues


def _check_link(node_id: str, where: str, title: str, url: str) -> list[FlowIssue]:
    issues: list[FlowIssue] = []
    if len(title) > MAX_LINK_TITLE:
        issues.append(
            _error(
                node_id,
                "LINK_TITLE_TOO_LONG",
                f"{where}: title {title!r} has {len(title)} characters; shorten it to at most "
                f"{MAX_LINK_TITLE}",
            )
        )
    if not url.lower().startswith(("http://", "https://", "{{")):
        issues.append(
            _error(
                node_id,
                "LINK_URL_INVALID",
                f"{where}: url {url!r} must be an http(s) address (https://shop.example/...)",
            )
        )
    return issues


def _check_carousel(node: MessageNode, label: str) -> list[FlowIssue]:
    issues: list[FlowIssue] = []
    cards = node.carousel
    if not MIN_CAROUSEL_CARDS <= len(cards) <= MAX_CAROUSEL_CARDS:
        issues.append(
            _error(
                node.id,
                "CAROUSEL_CARDS",
                f"{label} has {len(cards)} card(s); a carousel has {MIN_CAROUSEL_CARDS} to "
                f"{MAX_CAROUSEL_CARDS}",
            )
        )
    for number, card in enumerate(cards, 1):
        where = f"{label}, card {number}"
        if card.media.kind not in CAROUSEL_MEDIA:
            issues.append(
                _error(
                    node.id,
                    "CAROUSEL_CARD_MEDIA",
                    f"{where}: a card shows an image or a video, not {card.media.kind}",
                )
            )
        text = card.text or ""
        if len(text) > MAX_CARD_BODY or text.count("\n") > MAX_CARD_BODY_LINE_BREAKS:
            issues.append(
                _error(
                    node.id,
                    "CAROUSEL_CARD_TEXT_TOO_LONG",
                    f"{where}: its text has {len(text)} characters and {text.count(chr(10))} line "
                    f"breaks; a card takes at most {MAX_CARD_BODY} and {MAX_CARD_BODY_LINE_BREAKS}",
                )
            )
        if (card.link is None) == (not card.buttons) or len(card.buttons) > MAX_CARD_REPLIES:
            issues.append(
                _error(
                    node.id,
                    "CAROUSEL_CARD_ACTION",
                    f"{where} needs either a 'link' or 1 to {MAX_CARD_REPLIES} quick-reply 'buttons' "
                    f"(it has {'a link and ' if card.link else ''}{len(card.buttons)} button(s))",
                )
            )
        if card.link is not None:
            issues += _check_link(node.id, f"{where}: link", card.link.title, card.link.url)
    shapes = {(card.media.kind, card.link is not None, len(card.buttons)) for card in cards}
    if len(shapes) > 1:
        issues.append(
            _error(
                node.id,
                "CAROUSEL_CARDS_DIFFER",
                f"{label}: WhatsApp needs every card alike: the same media kind (all images or all "
                f"videos) and the same buttons (each a link, or each the same number of quick replies)",
            )
        )
    return issues


def _check_whatsapp_flow(node: WhatsAppFlowNode) -> list[FlowIssue]:
    issues: list[FlowIssue] = []
    label = f"whatsapp_flow {node.id!r}"
    if not node.flow_id.isdigit():
        issues.append(
            _error(
                node.id,
                "FLOW_ID_INVALID",
                f"{label}: flow_id {node.flow_id!r} is not a WhatsApp Flow id; copy the numeric id "
                f"WhatsApp Manager shows for the Flow",
            )
        )
    if len(node.cta) > MAX_FLOW_CTA:
        issues.append(
            _error(
                node.id,
                "FLOW_CTA_TOO_LONG",
                f"{label}: cta {node.cta!r} has {len(node.cta)} characters; the button that opens the "
                f"form takes at most {MAX_FLOW_CTA}",
            )
        )
    if len(node.text) > MAX_INTERACTIVE_BODY:
        issues.append(
            _error(
                node.id,
                "INTERACTIVE_TEXT_TOO_LONG",
                f"{label} has a text of {len(node.text)} characters; WhatsApp takes at most "
                f"{MAX_INTERACTIVE_BODY}",
            )
        )
    if node.data is not None and not node.data:
        issues.append(
            _error(
                node.id,
                "FLOW_DATA_EMPTY",
                f"{label}: 'data' is empty; WhatsApp wants the first screen's data to have "
                f"something in it, or leave 'data' out",
            )
        )
    if not node.fields:
        issues.append(
            _warning(
                node.id,
                "FORM_SAVES_NOTHING",
                f"{label} maps no form field to a contact field ('fields'), so the answers are "
                f'not saved; add e.g. "fields": {{"email": "email"}}',
            )
        )
    return issues


# What a shared location's parts fit: coordinates are numbers, names and addresses text.
_LOCATION_TYPES = {
    "latitude": ("NUMBER", "TEXT"),
    "longitude": ("NUMBER", "TEXT"),
    "name": ("TEXT",),
    "address": ("TEXT",),
}


def _check_location_fields(node: MessageNode, catalog: Catalog) -> list[FlowIssue]:
    assert node.location_request is not None
    issues: list[FlowIssue] = []
    for part, field_name in node.location_request.save.model_dump().items():
        if field_name is None:
            continue
        spec = catalog.fields.get(field_name)
        where = f"message {node.id!r}: location_request.save.{part}"
        if spec is None:
            issues.append(_unknown_field(node.id, where, field_name))
        elif spec[0].upper() not in _LOCATION_TYPES[part]:
            issues.append(
                _error(
                    node.id,
                    "WRONG_VALUE_TYPE",
                    f"{where}: field {field_name!r} is {spec[0]}; a {part} fits a "
                    f"{' or '.join(_LOCATION_TYPES[part])} field",
                )
            )
    return issues


def _check_form_fields(node: WhatsAppFlowNode, catalog: Catalog) -> list[FlowIssue]:
    return [
        _unknown_field(node.id, f"whatsapp_flow {node.id!r}: fields[{key!r}]", field_name)
        for key, field_name in node.fields.items()
        if field_name not in catalog.fields
    ]


# --- catalog checks --------------------------------------------------------------------------


def _check_catalog(node: Node, flow: FlowDefinition, catalog: Catalog) -> list[FlowIssue]:
    if isinstance(node, TemplateNode):
        return _check_template(node, catalog)
    if isinstance(node, MessageNode) and node.location_request is not None:
        return _check_location_fields(node, catalog)
    if isinstance(node, WhatsAppFlowNode):
        return _check_form_fields(node, catalog)
    if isinstance(node, TagNode):
        return [
            _unknown_tag(node.id, f"tag node {node.id!r} ({verb})", name, catalog)
            for verb, names in (("add", node.add), ("remove", node.remove))
            for name in names
            if name not in catalog.tags
        ]
    if isinstance(node, SetVariableNode):
        return _check_set_variable(node, catalog)
    if isinstance(node, AssignNode):
        issues: list[FlowIssue] = []
        if node.agent and not _known_agent(node.agent, catalog):
            issues.append(
                _error(
                    node.id,
                    "UNKNOWN_AGENT",
                    f"assign node {node.id!r}: agent {node.agent!r} is not an agent of this "
                    f"workspace; use an existing agent's email or id, or create the agent",
                )
            )
        if node.team and node.team not in catalog.teams:
            issues.append(
                _error(
                    node.id,
                    "UNKNOWN_AGENT",
                    f"assign node {node.id!r}: team {node.team!r} is not a team of this "
                    f"workspace; use an existing team or create it",
                )
            )
        return issues
    if isinstance(node, ConditionNode):
        return _check_segment_names(node, catalog)
    if isinstance(node, ConnectFlowNode):
        if not _connects_to_self(node, flow, catalog) and node.flow not in catalog.flows:
            return [
                _error(
                    node.id,
                    "UNKNOWN_FLOW",
                    f"connect_flow {node.id!r}: flow {node.flow!r} does not exist in this "
                    f"workspace; use the name or id of an existing flow",
                )
            ]
    return []


def _known_agent(name: str, catalog: Catalog) -> bool:
    """Agent ids match exactly; e-mails also match whatever their case."""
    if name in catalog.agents:
        return True
    lowered = name.strip().lower()
    return any(lowered == agent.lower() for agent in catalog.agents)


def _unknown_tag(node_id: str, where: str, name: str, catalog: Catalog) -> FlowIssue:
    return _error(
        node_id,
        "UNKNOWN_TAG",
        f"{where}: tag {name!r} does not exist; create it (marketing or support) "
        f"or use one of the workspace's tags",
    )


def _check_template(node: TemplateNode, catalog: Catalog) -> list[FlowIssue]:
    variants = catalog.templates.get(node.template) or []
    if not variants:
        return [
            _error(
                node.id,
                "UNKNOWN_TEMPLATE",
                f"template node {node.id!r}: there is no template called {node.template!r}; "
                f"create it or pick an existing one",
            )
        ]
    variant = next((v for v in variants if v.language == node.language), None)
    if variant is None:
        languages = ", ".join(sorted(str(v.language) for v in variants))
        return [
            _error(
                node.id,
                "UNKNOWN_TEMPLATE",
                f"template node {node.id!r}: template {node.template!r} has no {node.language!r} "
                f"version (it has: {languages}); set 'language' to one of those or add the "
                f"translation",
            )
        ]
    issues = _template_status_issues(node, variant, catalog)
    buttons = list(variant.buttons or [])
    kinds = [str(b.type or "").upper() for b in buttons]
    label = f"template {node.template!r} ({node.language}) used by node {node.id!r}"
    limits = (
        ("TEMPLATE_TOO_MANY_BUTTONS", len(buttons), MAX_TEMPLATE_BUTTONS, "buttons"),
        ("TEMPLATE_TOO_MANY_URL_BUTTONS", kinds.count("URL"), MAX_TEMPLATE_URL_BUTTONS, "URL buttons"),
        (
            "TEMPLATE_TOO_MANY_PHONE_BUTTONS",
            kinds.count("PHONE_NUMBER"),
            MAX_TEMPLATE_PHONE_BUTTONS,
            "phone-call buttons",
        ),
        (
            "TEMPLATE_TOO_MANY_COPY_CODE_BUTTONS",
            kinds.count("COPY_CODE"),
            MAX_TEMPLATE_COPY_CODE_BUTTONS,
            "copy-code buttons",
        ),
    )
    for code, count, limit, what in limits:
        if count > limit:
            issues.append(
                _error(
                    node.id,
                    code,
                    f"{label} has {count} {what}; WhatsApp allows at most {limit}: "
                    f"remove some from the template",
                )
            )
    # Node button i answers the template's quick reply i: its id is sent as that button's payload.
    quick_replies = [
        str(b.text or "") for b, kind in zip(buttons, kinds, strict=True) if kind == "QUICK_REPLY"
    ]
    for button in node.buttons[len(quick_replies) :]:
        offered = ", ".join(repr(q) for q in quick_replies) or "none"
        issues.append(
            _error(
                node.id,
                "UNKNOWN_TEMPLATE_BUTTON",
                f"template node {node.id!r}: button {button.id!r} has no quick reply to answer; "
                f"{node.template!r} ({node.language}) has {len(quick_replies)} ({offered}), "
                f"matched to the node's buttons in order",
            )
        )
    components = variant.components
    if components:  # what the template takes, per language: checked now, not at every send
        resolved = resolve_template(
            list(components), node.params, [b.id for b in node.buttons], placeholders=True
        )
        issues += [
            _error(
                node.id,
                "TEMPLATE_PARAMS",
                f"template node {node.id!r}: template {node.template!r} ({node.language}): {problem}",
            )
            for problem in resolved.problems
        ]
    return issues


def _template_status_issues(
    node: TemplateNode, variant: TemplateSummary, catalog: Catalog
) -> list[FlowIssue]:
    """What Meta's review means for this node; the sandbox says what it really does."""
    status = str(variant.status or "DRAFT").upper()
    label = f"template {node.template!r} ({node.language})"
    if status == "REJECTED":
        reason = variant.rejection_reason or "no reason given"
        return [
            _error(
                node.id,
                "TEMPLATE_REJECTED",
                f"template node {node.id!r}: Meta rejected {label}: {reason}; edit it "
                f"(updateTemplate) to resubmit it; flows waiting on it become active once it is approved",
            )
        ]
    if status in SENDABLE_STATUSES:
        return []
    if status == "DRAFT" and catalog.sandbox and not variant.meta_id:
        return [
            _warning(
                node.id,
                "TEMPLATE_SANDBOX_ONLY",
                f"template node {node.id!r}: {label} has not been submitted to Meta (no WhatsApp "
                f"number is connected): the sandbox sends it as written; connecting WhatsApp "
                f"submits it for review and the flow waits for approval",
            )
        ]
    then = {
        "DRAFT": "publishing submits it to Meta and the flow becomes active once it is approved",
        "PENDING": "Meta is reviewing it; the flow becomes active once it is approved",
        "PAUSED": "Meta paused it for low quality; it is not sent until Meta unpauses it",
        "DISABLED": "Meta disabled it for good; use another template",
    }.get(status, "it cannot be sent")
    return [
        _warning(
            node.id,
            "TEMPLATE_NOT_APPROVED",
            f"template node {node.id!r}: {label} is {status}, not approved; {then}",
        )
    ]


def _check_set_variable(node: SetVariableNode, catalog: Catalog) -> list[FlowIssue]:
    issues: list[FlowIssue] = []
    source = node.source()
    if source.from_ == "variable" and source.var and source.var not in catalog.fields:
        issues.append(_unknown_field(node.id, f"set_variable {node.id!r}: value.var", source.var))
    spec = catalog.fields.get(node.field)
    if spec is None:
        issues.append(_unknown_field(node.id, f"set_variable {node.id!r}: field", node.field))
        return issues
    if source.from_ != "value" or source.value is None or _has_placeholder(source.value):
        return issues  # replies, buttons and rendered placeholders are only known at run time
    field_type, options = spec
    problem = _value_problem(field_type, options, source.value)
    if problem is not None:
        allowed = f" (one of: {', '.join(options)})" if field_type.upper() == "FIXED" else ""
        issues.append(
            _error(
                node.id,
                "WRONG_VALUE_TYPE",
                f"set_variable {node.id!r}: value {source.value!r} does not fit field "
                f"{node.field!r} of type {field_type}{allowed}: {problem}",
            )
        )
    return issues


def _unknown_field(node_id: str, where: str, name: str) -> FlowIssue:
    return _error(
        node_id,
        "UNKNOWN_FIELD",
        f"{where} {name!r} is not a field of this workspace; create the field "
        f"(name, type) or use an existing one",
    )


def _has_placeholder(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def _value_problem(field_type: str, options: Sequence[str], raw: Any) -> str | None:
    """Why ``raw`` cannot be stored in a field of this type, or None when it can."""
    try:
        coerce_value(field_type, list(options), raw)
    except InvalidInput as exc:
        return exc.message
    except (ValueError, TypeError) as exc:
        return str(exc)
    return None


def _check_segment_names(node: ConditionNode, catalog: Catalog) -> list[FlowIssue]:
    issues: list[FlowIssue] = []
    for branch in node.branches:
        where = f"condition {node.id!r}, branch {branch.name!r}"
        for kind, name in segment_names(branch.segment):
            if kind == "tag" and name not in catalog.tags:
                issues.append(_unknown_tag(node.id, where, name, catalog))
            elif kind == "var" and name not in catalog.fields:
                issues.append(_unknown_field(node.id, f"{where}: var", name))
            elif kind == "assigned_to" and not _known_agent(name, catalog):
                issues.append(
                    _error(
                        node.id,
                        "UNKNOWN_AGENT",
                        f"{where}: assigned_to {name!r} is not an agent of this workspace; "
                        f"use an existing agent's id",
                    )
                )
    return issues


# --- graph walks -----------------------------------------------------------------------------


def _reachable(start: str, by_id: dict[str, Node]) -> set[str]:
    found = {start}
    stack = [start]
    while stack:
        for _, target in _runtime_edges(by_id[stack.pop()]):
            if target in by_id and target not in found:
                found.add(target)
                stack.append(target)
    return found


def _spin_loops(flow: FlowDefinition, by_id: dict[str, Node]) -> list[FlowIssue]:
    """One issue per strongly connected group of non-waiting nodes that can repeat forever."""
    graph: dict[str, list[str]] = {}
    for node_id, node in by_id.items():
        if _waits(node):
            continue
        graph[node_id] = list(
            dict.fromkeys(t for _, t in _runtime_edges(node) if t in by_id and not _waits(by_id[t]))
        )
    order = {node.id: i for i, node in enumerate(flow.nodes) if node.id in graph}
    issues: list[FlowIssue] = []
    for component in _strongly_connected(graph):
        first = min(component, key=order.__getitem__)
        if len(component) == 1 and first not in graph[first]:
            continue
        cycle = _cycle_through(first, graph, set(component))
        path = " → ".join(repr(n) for n in [*cycle, first])
        others = sorted(set(component) - set(cycle), key=order.__getitem__)
        also = f" (also on this loop: {', '.join(repr(n) for n in others)})" if others else ""
        issues.append(
            _error(
                first,
                "SPIN_LOOP",
                f"nodes {path} form a loop that repeats without waiting{also}; add a delay "
                f"or a message that waits for an answer (buttons, on_reply or no_reply) "
                f"on it, or break the loop",
            )
        )
    return issues


def _strongly_connected(graph: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm without recursion (flows can be deep)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, position = work.pop()
            if position == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            children = graph[node]
            if position < len(children):
                work.append((node, position + 1))
                child = children[position]
                if child not in index:
                    work.append((child, 0))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return components


def _cycle_through(first: str, graph: dict[str, list[str]], component: set[str]) -> list[str]:
    """A shortest cycle from ``first`` back to itself inside its component (BFS)."""
    parent: dict[str, str] = {}
    queue = deque([first])
    while queue:
        current = queue.popleft()
        for target in graph[current]:
            if target == first:
                path = [current]
                while path[-1] != first:
                    path.append(parent[path[-1]])
                return list(reversed(path))
            if target in component and target not in parent:
                parent[target] = current
                queue.append(target)
    return [first]


def instant_connections(flow: FlowDefinition) -> dict[str, str]:
    """The flows ``flow`` connects to before any wait: target name -> the connect_flow node id.

    Walks from the start through nodes that do not wait (as a run does in one turn); a message
    that waits or a delay stops the walk.
    """
    by_id = {n.id: n for n in flow.nodes}
    if flow.start not in by_id:
        return {}
    found: dict[str, str] = {}
    seen = {flow.start}
    queue = deque([flow.start])
    while queue:
        node = by_id[queue.popleft()]
        if _waits(node):
            continue
        if isinstance(node, ConnectFlowNode):
            found.setdefault(node.flow, node.id)
        for _, target in _runtime_edges(node):
            if target in by_id and target not in seen:
                seen.add(target)
                queue.append(target)
    return found


def _connects_to_self(node: ConnectFlowNode, flow: FlowDefinition, catalog: Catalog | None) -> bool:
    own_id = catalog.flow_id if catalog is not None else None
    return node.flow == flow.name or (own_id is not None and node.flow == own_id)


def _connect_loops(flow: FlowDefinition, by_id: dict[str, Node], catalog: Catalog | None) -> list[FlowIssue]:
    """``connect_flow`` cycles with no wait on the way (a contact would go round without end).

    This flow's connections before any wait come from its document; other flows' from the
    catalog (``connects``), so a loop through several flows is named from this flow's node.
    A self-connection after a wait is only advice (``CONNECT_TO_SELF``).
    """
    issues: list[FlowIssue] = []
    instant = set(instant_connections(flow).values())
    others: dict[str, frozenset[str]] = dict(catalog.connects) if catalog is not None else {}
    others.pop(flow.name, None)  # this flow's stored copy may be older than the document checked
    for node in flow.nodes:
        if not isinstance(node, ConnectFlowNode) or by_id.get(node.id) is not node:
            continue
        if _connects_to_self(node, flow, catalog):
            cycle: list[str] | None = [flow.name, flow.name]
        else:
            back = _connection_path(node.flow, flow.name, others)
            cycle = [flow.name, *back] if back else None
        if cycle is None or node.id not in instant:
            if cycle is not None and len(cycle) == 2:
                issues.append(_connect_to_self(node))
            continue
        path = " → ".join(repr(name) for name in cycle)
        issues.append(
            _error(
                node.id,
                "CONNECT_LOOP",
                f"connect_flow {node.id!r}: flows {path} connect to each other with no wait on the "
                f"way, so a contact would go round without end; add a message that waits for an "
                f"answer, or a delay, before one of these connections",
            )
        )
    return issues


def _connection_path(start: str, goal: str, connects: dict[str, frozenset[str]]) -> list[str] | None:
    """A shortest chain of instant connections from flow ``start`` to flow ``goal`` (BFS)."""
    parent: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        current = queue.popleft()
        if current == goal:
            path = [current]
            while parent[path[-1]] is not None:
                path.append(parent[path[-1]])  # type: ignore[arg-type]
            return list(reversed(path))
        for target in sorted(connects.get(current, ())):
            if target not in parent:
                parent[target] = current
                queue.append(target)
    return None


def _long_wait_after(node: Node, kind: str) -> bool:
    """Whether leaving ``node`` along ``kind`` comes after a wait longer than the 24-hour window."""
    if isinstance(node, DelayNode):
        return node.until is not None or (node.for_ is not None and parse_duration(node.for_) > WINDOW)
    if kind == "no_reply" and isinstance(node, AnsweredNode) and node.no_reply:
        return parse_duration(node.no_reply.after) > WINDOW
    return False


def _window_warnings(start: str, by_id: dict[str, Node], webhook: bool) -> list[FlowIssue]:
    """Simple messages that may be due while the 24-hour window is closed.

    BFS over (node, why-closed bits): a template clears the bits (it opens the conversation), a
    reply or button press clears them (the customer wrote), a long wait sets one. At most four
    states per node, so the walk stays linear.
    """
    first = (start, _AFTER_WEBHOOK if webhook else 0)
    seen = {first}
    queue = deque([first])
    warned: dict[str, int] = {}
    while queue:
        node_id, bits = queue.popleft()
        node = by_id[node_id]
        if isinstance(node, SimpleMessageNode) and bits:
            warned[node_id] = warned.get(node_id, 0) | bits
        base = 0 if isinstance(node, TemplateNode) else bits
        for kind, target in _runtime_edges(node):
            if target not in by_id:
                continue
            answered = kind in ("button", "reply", "other", "location", "answered") or (
                kind == "invalid" and isinstance(node, WhatsAppFlowNode)  # the customer sent the form
            )
            after = 0 if answered else base
            if _long_wait_after(node, kind):
                after |= _AFTER_LONG_WAIT
            state = (target, after)
            if state not in seen:
                seen.add(state)
                queue.append(state)
    issues: list[FlowIssue] = []
    for node_id in (n for n in by_id if n in warned):
        if warned[node_id] & _AFTER_LONG_WAIT:
            issues.append(
                _warning(
                    node_id,
                    "SIMPLE_MESSAGE_AFTER_LONG_WAIT",
                    f"message {node_id!r} can be reached after a wait longer than 24 h "
                    f"with no template before it; the conversation window may be closed "
                    f"and it would not be sent: put a template node before it",
                )
            )
        if warned[node_id] & _AFTER_WEBHOOK:
            issues.append(
                _warning(
                    node_id,
                    "SIMPLE_MESSAGE_AFTER_WEBHOOK_START",
                    f"message {node_id!r} can be reached from the webhook start with no "
                    f"template before it; the conversation may not be open and it would "
                    f"not be sent: start with a template node",
                )
            )
    return issues


def _check_placeholder_formats(node: Node) -> list[FlowIssue]:
    """A format named in a placeholder ({{contact.birthday|date:long}}) must exist and be well formed."""
    texts: list[str] = []
    if isinstance(node, MessageNode):
        texts += [node.text or "", (node.media.caption or "") if node.media else ""]
        texts += _interactive_texts(node)
    elif isinstance(node, WhatsAppFlowNode):
        texts += [node.text, node.cta, *_strings(node.data)]
    elif isinstance(node, TemplateNode):
        texts += list(_strings(node.params))
    elif isinstance(node, SetVariableNode) and isinstance(node.value, str):
        texts.append(node.value)
    return [
        _error(node.id, "PLACEHOLDER_FORMAT", f"node {node.id!r}: {problem}")
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
