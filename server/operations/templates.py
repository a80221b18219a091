"""The template lifecycle with Meta: submit for review, learn the outcome, activate waiting flows.

Outcomes arrive by webhook (``apply_template_status``, called by the inbound channel code) or by
"sync now" (``sync_templates``). A flow published on a WhatsApp workspace waits for its templates
(``pending_version``, status ``pending_approval``), shows ``template_rejected`` while one of them
is rejected, and becomes active once every template it uses can be sent. ``update_template``
edits a draft or a rejected template and resubmits it. The lifecycle is told in docs/templates.md.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from pymongo.errors import DuplicateKeyError

from server.channels.whatsapp.client import GraphClient
from server.channels.whatsapp.template_message import PARAM, SENDABLE_TEMPLATE_STATUSES, parameter_count
from server.errors import Conflict, EgressRefused, InvalidInput, NotFound, Unavailable
from server.ids import new_id
from server.machines.definition import TemplateNode, parse_flow
from server.operations.flow_versions import FlowVersionServices, activate_version
from server.operations.template_drafts import template_fields, validate_components
from server.store.catalog import TemplateRepository
from server.store.channels import ChannelRepository
from server.workspace_caches import WorkspaceCaches

log = logging.getLogger(__name__)

# Meta's template statuses (webhook ``event`` / list ``status``) -> ours. Others are kept only in
# ``meta_status`` (e.g. LIMIT_EXCEEDED is about creating templates, not this one).
META_STATUSES = {
    "APPROVED": "APPROVED",
    "REINSTATED": "APPROVED",
    "UNPAUSED": "APPROVED",
    "PENDING": "PENDING",
    "IN_APPEAL": "PENDING",
    "REJECTED": "REJECTED",
    "PAUSED": "PAUSED",
    "DISABLED": "DISABLED",
    "PENDING_DELETION": "DISABLED",
    "DELETED": "DISABLED",
    "ARCHIVED": "DISABLED",
    "FLAGGED": "FLAGGED",
}
SUBMITTABLE = ("DRAFT", "REJECTED")


class TemplateStatusServices(FlowVersionServices, Protocol):
    """Applying a template's review outcome and activating the flows waiting for it."""

    @property
    def templates(self) -> TemplateRepository: ...


class TemplateServices(TemplateStatusServices, Protocol):
    """Submitting and syncing templates with Meta (the Graph API client) and refreshing waiting flows."""

    @property
    def caches(self) -> WorkspaceCaches: ...

    @property
    def channels(self) -> ChannelRepository: ...

    @property
    def graph(self) -> GraphClient: ...


async def _whatsapp(services: TemplateServices, workspace_id: str) -> dict[str, Any]:
    channel = await services.channels.for_workspace(workspace_id)
    if channel is None:
        raise InvalidInput("this workspace has no WhatsApp number; connect one first (connectWhatsApp)")
    return channel


def meta_components(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Our stored components in Meta's create format, with the examples review needs for variables."""
    result = []
    for component in components:
        part = dict(component)
        text = part.get("text") or ""
        count = parameter_count(text)
        if count and "example" not in part:
            samples = [f"example {i + 1}" for i in range(count)]
            if part["type"] == "BODY":
                part["example"] = {"body_text": [samples]}
            elif part["type"] == "HEADER":
                part["example"] = {"header_text": samples}
        if part["type"] == "BUTTONS":
            buttons = []
            for button in part.get("buttons") or []:
                button = dict(button)
                if (
                    button.get("type") == "URL"
                    and PARAM.search(button.get("url") or "")
                    and "example" not in button
                ):
                    button["example"] = [PARAM.sub("example", button["url"])]
                buttons.append(button)
            part["buttons"] = buttons
        result.append(part)
    return result


async def submit_template(services: TemplateServices, workspace_id: str, template_id: str) -> dict[str, Any]:
    """Send a DRAFT (or fixed REJECTED) template to Meta for review; it becomes PENDING."""
    channel = await _whatsapp(services, workspace_id)
    template = await services.templates.get(workspace_id, template_id)
    if template is None:
        raise NotFound(f"template {template_id} not found")
    if template["status"] not in SUBMITTABLE:
        raise InvalidInput(
            f"template {template['name']!r} is {template['status']}; "
            "only drafts and rejected templates are submitted"
        )
    components = meta_components(template.get("components") or [])
    if template.get("meta_id"):  # a rejected template is fixed in place (Meta's edit endpoint)
        result = await services.graph.edit_template(
            channel, template["meta_id"], {"category": template["category"], "components": components}
        )
        answer = {"id": template["meta_id"], "status": "PENDING", "category": template["category"]}
    else:
        body = {
            "name": template["name"],
            "language": template["language"],
            "category": template["category"],
            "components": components,
        }
        result = await services.graph.create_template(channel, body)
        answer = result.body if isinstance(result.body, dict) else {}
    now = services.clock.now()
    if not result.ok:
        _refused_by_egress(result.error_code, "submitTemplate")
        if result.retry:
            raise Unavailable(f"Meta could not take template {template['name']!r} now: {result.error}")
        await services.templates.update(
            workspace_id, template_id, {"submit_error": result.error, "updated_at": now}
        )
        raise InvalidInput(f"Meta refused template {template['name']!r}: {result.error}", field="components")
    status = META_STATUSES.get(str(answer.get("status") or "PENDING").upper(), "PENDING")
    changes = {
        "meta_id": str(answer.get("id") or template.get("meta_id")),
        "status": status,
        "meta_status": answer.get("status"),
        "rejection_reason": None,
        "submit_error": None,
        "submitted_at": now,
        "updated_at": now,
    }
    if answer.get("category") in ("MARKETING", "UTILITY", "AUTHENTICATION"):
        changes["category"] = answer["category"]  # Meta may recategorise on creation
    updated = await services.templates.update(workspace_id, template_id, changes)
    assert updated is not None
    await refresh_waiting_flows(services, workspace_id)
    return updated


def _reason(status: str, reason: str | None) -> str | None:
    if status != "REJECTED" or not reason or reason.strip().upper() == "NONE":
        return None
    return reason


async def _set_status(
    services: TemplateStatusServices,
    workspace_id: str,
    template: dict[str, Any],
    meta_status: str,
    reason: str | None,
) -> dict[str, Any]:
    raw = meta_status.strip().upper()
    status = META_STATUSES.get(raw)
    changes: dict[str, Any] = {"meta_status": raw, "updated_at": services.clock.now()}
    if status is not None:
        changes["status"] = status
        changes["rejection_reason"] = _reason(status, reason)
    updated = await services.templates.update(workspace_id, template["_id"], changes)
    return updated or template


async def apply_template_status(
    services: TemplateStatusServices,
    workspace_id: str,
    *,
    meta_id: str | None,
    name: str,
    language: str,
    status: str,
    reason: str | None,
) -> None:
    """Meta's verdict on a template (``message_template_status_update``); REJECTED keeps its reason."""
    template = await services.templates.by_meta_id(workspace_id, meta_id) if meta_id else None
    if template is None:
        found = await services.templates.get_by_name(workspace_id, name, language)
        template = found[0] if found else None
    if template is None:
        log.warning(
            "status %s for unknown template %s (%s, %s) in %s", status, meta_id, name, language, workspace_id
        )
        return
    if meta_id and not template.get("meta_id"):
        await services.templates.update(workspace_id, template["_id"], {"meta_id": meta_id})
    await _set_status(services, workspace_id, template, status, reason)
    await refresh_waiting_flows(services, workspace_id)


async def sync_templates(services: TemplateServices, workspace_id: str) -> list[dict[str, Any]]:
    """ "Sync now": read every template Meta has for the WABA; update ours, import the ones we lack."""
    channel = await _whatsapp(services, workspace_id)
    result = await services.graph.list_templates(channel)
    if not result.ok:
        _refused_by_egress(result.error_code, "syncTemplates")
        raise Unavailable(
            f"could not read templates from the WhatsApp API: {result.error}", remoteCode=result.error_code
        )
    for remote in (result.body or {}).get("data") or []:
        name, language = remote.get("name"), remote.get("language")
        meta_id = str(remote.get("id") or "") or None
        local = await services.templates.by_meta_id(workspace_id, meta_id) if meta_id else None
        if local is None and name and language:
            found = await services.templates.get_by_name(workspace_id, name, language)
            local = found[0] if found else None
        reason = remote.get("rejected_reason") or remote.get("reason")
        if local is None:
            await _import(services, workspace_id, remote)
            continue
        changes: dict[str, Any] = {}
        if meta_id and local.get("meta_id") != meta_id:
            changes["meta_id"] = meta_id
        if remote.get("category") in ("MARKETING", "UTILITY", "AUTHENTICATION"):
            changes["category"] = remote["category"]
        if changes:
            local = await services.templates.update(workspace_id, local["_id"], changes) or local
        await _set_status(services, workspace_id, local, str(remote.get("status") or ""), reason)
    await refresh_waiting_flows(services, workspace_id)
    return await services.templates.list(workspace_id)


def _refused_by_egress(code: str | None, operation: str) -> None:
    """The channel's base URL (or a page Meta pointed to) is one the egress policy refuses."""
    if code == EgressRefused.code:
        raise EgressRefused(f"{operation}: the channel's base URL", field="baseUrl")


async def _import(services: TemplateServices, workspace_id: str, remote: dict[str, Any]) -> None:
    """A template created outside the product (e.g. in WhatsApp Manager) becomes usable by flows."""
    try:
        components = validate_components(
            [{**c, "type": str(c.get("type") or "").upper()} for c in remote.get("components") or []]
        )
    except InvalidInput as exc:
        log.info("not importing template %s: %s", remote.get("name"), exc.message)
        return
    status = META_STATUSES.get(str(remote.get("status") or "").upper(), "PENDING")
    now = services.clock.now()
    await services.templates.insert(
        {
            "_id": new_id("tpl"),
            "workspace_id": workspace_id,
            "name": remote["name"],
            "language": remote["language"],
            "category": remote.get("category") or "UTILITY",
            "status": status,
            "meta_status": remote.get("status"),
            "meta_id": str(remote.get("id")),
            "rejection_reason": _reason(status, remote.get("rejected_reason")),
            "components": components,
            "created_at": now,
            "updated_at": now,
        }
    )


# --- flows waiting for approval -------------------------------------------------------------------


def templates_of(definition: Any) -> set[tuple[str, str]]:
    """(name, language) of every template node of a flow document."""
    try:
        flow = parse_flow(definition)
    except Exception:  # an unparsable draft uses nothing we can name
        return set()
    return {(n.template, n.language) for n in flow.nodes if isinstance(n, TemplateNode)}


async def unapproved_templates(
    services: TemplateStatusServices, workspace_id: str, definition: Any
) -> list[dict[str, Any]]:
    """The templates a flow uses that cannot be sent yet (missing ones are the validator's job)."""
    waiting = []
    for name, language in sorted(templates_of(definition)):
        found = await services.templates.get_by_name(workspace_id, name, language)
        if found and found[0]["status"] not in SENDABLE_TEMPLATE_STATUSES:
            waiting.append(found[0])
    return waiting


def waiting_state(templates: list[dict[str, Any]]) -> str:
    """Why a published version is not active yet: a rejected template, or Meta's review."""
    return "template_rejected" if any(t["status"] == "REJECTED" for t in templates) else "pending_approval"


async def refresh_waiting_flows(services: TemplateStatusServices, workspace_id: str) -> list[str]:
    """Move every flow version waiting for Meta to where its templates now are; returns activated ids.

    All templates sendable: the version becomes active. One rejected: ``template_rejected``
    (until an edited template is resubmitted). Otherwise ``pending_approval``. A flow with an
    active version keeps status ``active`` (that version still runs); ``pending_status`` says
    what holds its pending version.
    """
    activated = []
    for flow in await services.flows.list(workspace_id):
        version = flow.get("pending_version")
        if not version or flow.get("status") == "archived":
            continue
        stored = await services.flows.get_version(flow["_id"], version)
        if stored is None:
            continue
        waiting = await unapproved_templates(services, workspace_id, stored["definition"])
        if not waiting:
            await activate_version(
                services, workspace_id, flow["_id"], version, flow.get("pending_in_flight") or "finish"
            )
            activated.append(flow["_id"])
            continue
        state = waiting_state(waiting)
        changes: dict[str, Any] = {"pending_status": state}
        if not flow.get("active_version"):
            changes["status"] = state
        if any(flow.get(k) != v for k, v in changes.items()):
            await services.flows.update(
                workspace_id, flow["_id"], {**changes, "updated_at": services.clock.now()}
            )
    return activated


# --- editing and resubmitting ----------------------------------------------------------------------

EDITABLE = ("DRAFT", "REJECTED")


async def update_template(
    services: TemplateServices, workspace_id: str, template_id: str, data: dict[str, Any]
) -> dict[str, Any]:
    """Edit a draft or a rejected template; a rejected one goes back to Meta for review at once.

    Meta's edit endpoint keeps a submitted template's id, name and language, so only a draft
    Meta never saw may be renamed. A draft is submitted here only when a flow is already waiting
    for it (otherwise publishing does it). Without a WhatsApp number an edited rejection becomes a
    DRAFT again: Meta's verdict was about the old text.
    """
    template = await services.templates.get(workspace_id, template_id)
    if template is None:
        raise NotFound(f"template {template_id} not found")
    if template["status"] not in EDITABLE:
        raise InvalidInput(
            f"template {template['name']!r} ({template['language']}) is {template['status']}: only drafts "
            "and rejected templates can be edited; create a new template instead",
            field="id",
        )
    fields = template_fields(data)
    renamed = (fields["name"], fields["language"]) != (template["name"], template["language"])
    if renamed and template.get("meta_id"):
        raise InvalidInput(
            f"Meta keeps the name and language of a submitted template ({template['name']!r}, "
            f"{template['language']}); create a new template for another name or language",
            field="name",
        )
    channel = await services.channels.for_workspace(workspace_id)
    changes: dict[str, Any] = {**fields, "submit_error": None, "updated_at": services.clock.now()}
    if template["status"] == "REJECTED" and channel is None:
        changes.update(status="DRAFT", rejection_reason=None)
    try:
        updated = await services.templates.update(workspace_id, template_id, changes)
    except DuplicateKeyError:
        raise Conflict(
            f"template {fields['name']!r} already exists in language {fields['language']}", field="name"
        ) from None
    if updated is None:
        raise NotFound(f"template {template_id} not found")
    services.caches.forget_extras(workspace_id)  # runs check a template's category (consent)
    if channel is not None and (
        updated["status"] == "REJECTED" or await _awaited_by_a_flow(services, workspace_id, updated)
    ):
        return await submit_template(services, workspace_id, template_id)
    await refresh_waiting_flows(services, workspace_id)
    return updated


async def _awaited_by_a_flow(services: TemplateServices, workspace_id: str, template: dict[str, Any]) -> bool:
    """Whether a published version waits for this template (so it must reach Meta now)."""
    key = (template["name"], template["language"])
    for flow in await services.flows.list(workspace_id):
        version = flow.get("pending_version")
        if version and flow.get("status") != "archived":
            stored = await services.flows.get_version(flow["_id"], version)
            if stored is not None and key in templates_of(stored["definition"]):
                return True
    return False


# --- a sandbox workspace connects WhatsApp ---------------------------------------------------------


async def review_sandbox_flows(services: TemplateServices, workspace_id: str) -> list[str]:
    """Hold every active flow whose templates Meta has not approved, and submit its drafts.

    In the sandbox, templates are sent unreviewed. Once a WhatsApp number is connected only
    approved ones can be sent, so such a flow goes back to waiting (its version becomes the
    pending one, starting nothing) until Meta approves; a draft Meta refuses outright keeps its
    ``submit_error`` and its flow waits for an edit. Returns the ids of the flows held.
    """
    held = []
    for flow in await services.flows.list(workspace_id):
        version = flow.get("active_version")
        if flow.get("status") != "active" or not version or flow.get("hidden") or flow.get("pending_version"):
            continue
        stored = await services.flows.get_version(flow["_id"], version)
        if stored is None:
            continue
        waiting = await unapproved_templates(services, workspace_id, stored["definition"])
        if not waiting:
            continue
        for template in waiting:
            if template["status"] == "DRAFT":
                try:
                    await submit_template(services, workspace_id, template["_id"])
                except (InvalidInput, Unavailable) as exc:
                    log.info("template %s not submitted on connect: %s", template["name"], exc.message)
        await services.flows.update(
            workspace_id,
            flow["_id"],
            {
                "status": "pending_approval",
                "active_version": None,
                "pending_version": version,
                "pending_status": "pending_approval",
                "pending_in_flight": "finish",
                "updated_at": services.clock.now(),
            },
        )
        held.append(flow["_id"])
    await refresh_waiting_flows(services, workspace_id)
    return held
