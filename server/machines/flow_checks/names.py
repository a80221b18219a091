"""Every name a flow uses checked against what the workspace has (the ``Catalog``): templates and
their review status, fields and the values set into them, tags, agents, teams, flows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from server.channels.whatsapp.template_message import (
    MAX_TEMPLATE_BUTTONS,
    MAX_TEMPLATE_BUTTONS_BY_TYPE,
    SENDABLE_TEMPLATE_STATUSES,
    resolve_template,
)
from server.errors import InvalidInput
from server.machines.catalog import Catalog, TemplateSummary
from server.machines.definition import (
    AssignNode,
    ConditionNode,
    ConnectFlowNode,
    FlowDefinition,
    MessageNode,
    Node,
    SetVariableNode,
    TagNode,
    TemplateNode,
    WhatsAppFlowNode,
)
from server.machines.flow_checks.graph import connects_to_self
from server.machines.flow_checks.issues import FlowIssue, error, warning
from server.machines.flow_walk import segment_names
from server.machines.values import coerce_value


def check_catalog(node: Node, flow: FlowDefinition, catalog: Catalog) -> list[FlowIssue]:
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
                error(
                    node.id,
                    "UNKNOWN_AGENT",
                    f"assign node {node.id!r}: agent {node.agent!r} is not an agent of this "
                    f"workspace; use an existing agent's email or id, or create the agent",
                )
            )
        if node.team and node.team not in catalog.teams:
            issues.append(
                error(
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
        if not connects_to_self(node, flow, catalog) and node.flow not in catalog.flows:
            return [
                error(
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
    return error(
        node_id,
        "UNKNOWN_TAG",
        f"{where}: tag {name!r} does not exist; create it (marketing or support) "
        f"or use one of the workspace's tags",
    )


# --- templates ----------------------------------------------------------------------------------


def _check_template(node: TemplateNode, catalog: Catalog) -> list[FlowIssue]:
    variants = catalog.templates.get(node.template) or []
    if not variants:
        return [
            error(
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
            error(
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
        (
            "TEMPLATE_TOO_MANY_URL_BUTTONS",
            kinds.count("URL"),
            MAX_TEMPLATE_BUTTONS_BY_TYPE["URL"],
            "URL buttons",
        ),
        (
            "TEMPLATE_TOO_MANY_PHONE_BUTTONS",
            kinds.count("PHONE_NUMBER"),
            MAX_TEMPLATE_BUTTONS_BY_TYPE["PHONE_NUMBER"],
            "phone-call buttons",
        ),
        (
            "TEMPLATE_TOO_MANY_COPY_CODE_BUTTONS",
            kinds.count("COPY_CODE"),
            MAX_TEMPLATE_BUTTONS_BY_TYPE["COPY_CODE"],
            "copy-code buttons",
        ),
    )
    for code, count, limit, what in limits:
        if count > limit:
            issues.append(
                error(
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
            error(
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
            error(
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
            error(
                node.id,
                "TEMPLATE_REJECTED",
                f"template node {node.id!r}: Meta rejected {label}: {reason}; edit it "
                f"(updateTemplate) to resubmit it; flows waiting on it become active once it is approved",
            )
        ]
    if status in SENDABLE_TEMPLATE_STATUSES:
        return []
    if status == "DRAFT" and catalog.sandbox and not variant.meta_id:
        return [
            warning(
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
        warning(
            node.id,
            "TEMPLATE_NOT_APPROVED",
            f"template node {node.id!r}: {label} is {status}, not approved; {then}",
        )
    ]


# --- fields -------------------------------------------------------------------------------------


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
            error(
                node.id,
                "WRONG_VALUE_TYPE",
                f"set_variable {node.id!r}: value {source.value!r} does not fit field "
                f"{node.field!r} of type {field_type}{allowed}: {problem}",
            )
        )
    return issues


def _unknown_field(node_id: str, where: str, name: str) -> FlowIssue:
    return error(
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
                    error(
                        node.id,
                        "UNKNOWN_AGENT",
                        f"{where}: assigned_to {name!r} is not an agent of this workspace; "
                        f"use an existing agent's id",
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
                error(
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
