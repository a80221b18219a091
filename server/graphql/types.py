"""GraphQL object types; each is a thin view over a stored document (dict)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from typing import Any

import strawberry
from strawberry.scalars import JSON

from server.clock import as_utc
from server.errors import InvalidFlow
from server.graphql import runs
from server.graphql.catalog import Agent
from server.graphql.context import TenantInfo
from server.graphql.costs import CostEstimate
from server.graphql.flow_document import FlowDefinitionType, flow_definition
from server.graphql.json_values import plain
from server.graphql.loaders import loaders
from server.graphql.permissions import ADMIN_ONLY
from server.graphql.run_steps import Step, step_of
from server.graphql.runs import RunStatus
from server.machines.compiler import compile_flow, mermaid
from server.machines.definition import parse_flow
from server.machines.flow_checks import issues as machine_issues
from server.machines.regional import workspace_regional
from server.operations.costs import flow_cost_estimate
from server.operations.flows import flow_issues
from server.store.workspaces import status_of
from server.window import window_open


@strawberry.enum
class FlowStatus(Enum):
    DRAFT = "draft"
    ACTIVE = "active"
    ARCHIVED = "archived"
    PENDING_APPROVAL = strawberry.enum_value(
        "pending_approval", description="published; starts nothing until Meta approves its templates"
    )
    TEMPLATE_REJECTED = strawberry.enum_value(
        "template_rejected",
        description="published; starts nothing: Meta rejected one of its templates (issues, code "
        "TEMPLATE_REJECTED, give the node and the reason); updateTemplate fixes and resubmits it",
    )


@strawberry.enum
class Severity(Enum):
    ERROR = "ERROR"
    WARNING = "WARNING"


@strawberry.enum(description="an operator disables a workspace (keys refused, webhooks 410, timers held)")
class WorkspaceStatus(Enum):
    ACTIVE = "active"
    DISABLED = "disabled"
    DELETING = "deleting"


@strawberry.type
class Workspace:
    id: strawberry.ID
    name: str
    timezone: str
    locale: str = strawberry.field(
        description="BCP 47 tag (es-ES): customers' dates and numbers are read and written its way; "
        "unset, it follows the default country or the time zone's country"
    )
    default_country: str | None = strawberry.field(
        description="ISO 3166 country national phone numbers belong to (null: only +international)"
    )
    opt_out_keywords: list[str] = strawberry.field(
        description="the workspace's own opt-out words; STOP and BAJA always apply as well"
    )
    status: WorkspaceStatus
    created_at: datetime | None
    disabled_at: datetime | None = strawberry.field(description="when an operator disabled it (null: active)")

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Workspace:
        regional = workspace_regional(doc)
        created, disabled = doc.get("created_at"), doc.get("disabled_at")
        return cls(
            id=strawberry.ID(doc["_id"]),
            name=doc["name"],
            timezone=regional.timezone,
            locale=regional.locale,
            default_country=doc.get("default_country"),
            opt_out_keywords=list((doc.get("settings") or {}).get("opt_out_keywords") or []),
            status=WorkspaceStatus(status_of(doc)),
            created_at=as_utc(created) if created else None,
            disabled_at=as_utc(disabled) if disabled and status_of(doc) != "active" else None,
        )


@strawberry.type
class FlowIssue:
    node_id: str | None
    severity: Severity
    code: str
    message: str

    @classmethod
    def of(cls, issue: machine_issues.FlowIssue) -> FlowIssue:
        return cls(
            node_id=issue.node_id, severity=Severity(issue.severity), code=issue.code, message=issue.message
        )


async def _diagram(info: TenantInfo, definition: object) -> str | None:
    """Mermaid text of a flow document (None when a draft cannot be drawn: see its issues);
    template buttons are titled as the templates show them."""
    if not isinstance(definition, dict):
        return None  # not a flow document at all
    extras = await info.context.services.caches.extras_of(info.context.workspace())
    try:
        return mermaid(compile_flow(parse_flow(definition)), extras.template_buttons)
    except Exception:  # a draft naming nodes it does not have, or not a flow at all
        return None


@strawberry.type
class FlowVersion:
    version: int
    published_at: datetime
    definition: JSON

    @strawberry.field
    async def diagram(self, info: TenantInfo) -> str:
        return await _diagram(info, self.definition) or ""  # a published version always compiles


@strawberry.type
class Flow:
    doc: strawberry.Private[dict[str, Any]]
    stored_versions: strawberry.Private[list[dict[str, Any]] | None] = None

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.doc["_id"])

    @strawberry.field
    def name(self) -> str:
        return self.doc["name"]

    @strawberry.field
    def status(self) -> FlowStatus:
        return FlowStatus(self.doc["status"])

    @strawberry.field(description="the draft as JSON, as imported and exported (see definition)")
    def draft(self) -> JSON:
        return self.doc["draft"]

    @strawberry.field(
        description="the draft as the typed flow document: one type per node kind (FlowNode); null "
        "when the draft cannot be read (see issues)"
    )
    # A class built at import time from the pydantic models (strawberry reads this annotation at
    # runtime); mypy cannot follow a class made by a call.
    def definition(self) -> FlowDefinitionType | None:  # type: ignore[valid-type]
        try:
            return flow_definition(parse_flow(self.doc["draft"]))
        except InvalidFlow:
            return None

    @strawberry.field(
        description="the WhatsApp channel its runs talk through (null: the workspace's default); a "
        "trigger's or broadcast's own channel wins, and a customer is answered on the number they wrote to"
    )
    def channel_id(self) -> strawberry.ID | None:
        return self.doc.get("channel_id")

    @strawberry.field
    def active_version(self) -> int | None:
        return self.doc.get("active_version")

    @strawberry.field(description="a published version waiting for Meta to approve its templates")
    def pending_version(self) -> int | None:
        return self.doc.get("pending_version")

    @strawberry.field(
        description="what holds pendingVersion: PENDING_APPROVAL (Meta is reviewing its templates) or "
        "TEMPLATE_REJECTED (one was rejected: the reason is in issues, code TEMPLATE_REJECTED, on its "
        "node); null without a pending version. status says the same for a flow with no active version"
    )
    def pending_status(self) -> FlowStatus | None:
        if not self.doc.get("pending_version"):
            return None
        return FlowStatus(self.doc.get("pending_status") or "pending_approval")

    @strawberry.field(
        description="Meta's charges per template node: for one recipient country, or for the "
        "workspace's contacts by country (rate card in server/channels/whatsapp/rate_card.json)"
    )
    async def cost_estimate(self, info: TenantInfo, country: str | None = None) -> CostEstimate:
        found = await flow_cost_estimate(info.context.services, self.doc["workspace_id"], self.doc, country)
        return CostEstimate.of(found)

    @strawberry.field(description="validation of the draft against the workspace's catalog")
    async def issues(self, info: TenantInfo) -> list[FlowIssue]:
        found = await flow_issues(info.context.services, self.doc["workspace_id"], self.doc)
        return [FlowIssue.of(i) for i in found]

    @strawberry.field
    async def versions(self, info: TenantInfo) -> list[FlowVersion]:
        stored = await info.context.services.flows.list_versions(self.doc["_id"])
        return [
            FlowVersion(version=v["version"], published_at=v["published_at"], definition=v["definition"])
            for v in stored
        ]

    @strawberry.field(description="Mermaid text of the active version's graph (the draft's if none)")
    async def diagram(self, info: TenantInfo) -> str | None:
        definition = self.doc["draft"]
        if self.doc.get("active_version"):
            version = await info.context.services.flows.get_version(
                self.doc["_id"], self.doc["active_version"]
            )
            if version is not None:
                definition = version["definition"]
        return await _diagram(info, definition)


@strawberry.type
class Run:
    doc: strawberry.Private[dict[str, Any]]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return runs.run_id(self)

    @strawberry.field
    def flow_id(self) -> strawberry.ID:
        return strawberry.ID(self.doc["flow_id"])

    @strawberry.field
    def flow_name(self) -> str | None:
        return self.doc.get("flow_name")

    @strawberry.field(permission_classes=ADMIN_ONLY, description="the flow (ADMIN keys; see flowName)")
    async def flow(self, info: TenantInfo) -> Flow | None:
        found = await loaders(info).flows.load((info.context.workspace(), self.doc["flow_id"]))
        return Flow(doc=found) if found else None

    @strawberry.field
    def version(self) -> int:
        return self.doc["version"]

    @strawberry.field
    def phone(self) -> str | None:
        return self.doc.get("phone")

    @strawberry.field
    async def contact(self, info: TenantInfo) -> Contact | None:
        contact_id = self.doc.get("contact_id")
        if contact_id is None:
            return None
        found = await loaders(info).contacts.load((info.context.workspace(), contact_id))
        return Contact(doc=found) if found else None

    @strawberry.field
    def status(self) -> RunStatus:
        return runs.run_status(self)

    @strawberry.field
    def node(self) -> str | None:
        return runs.run_node(self)

    @strawberry.field
    def waiting_for(self) -> JSON | None:
        return runs.run_waiting_for(self)

    @strawberry.field
    def end_reason(self) -> str | None:
        return runs.run_end_reason(self)

    @strawberry.field
    def reply(self) -> str | None:
        return self.doc.get("reply")

    @strawberry.field(description="what happened, oldest first: one type per action (see Step)")
    def steps(self, info: TenantInfo) -> list[Step]:
        workspace_id = info.context.workspace()
        return [step_of(s, workspace_id) for s in self.doc.get("steps", [])]

    @strawberry.field(
        description="the WhatsApp channel its messages go through (null: the workspace's default, or the "
        "sandbox); chosen when it started, then the number the customer last wrote to"
    )
    def channel_id(self) -> strawberry.ID | None:
        return self.doc.get("channel_id")

    @strawberry.field(
        description="how many steps were dropped between the first and the latest ones kept "
        "(a run keeps its first step and its latest 199)"
    )
    def steps_dropped(self) -> int:
        return int(self.doc.get("steps_dropped") or 0)

    @strawberry.field
    def trigger(self) -> JSON:
        return plain(self.doc.get("trigger") or {})

    @strawberry.field
    def started_at(self) -> datetime:
        return runs.run_started_at(self)

    @strawberry.field
    def ended_at(self) -> datetime | None:
        return runs.run_ended_at(self)


async def assigned_agent_of(info: TenantInfo, contact: Mapping[str, Any]) -> Agent | None:
    """The agent who owns the contact's conversation (batched per operation), or None."""
    agent_id = contact.get("assigned_agent")
    found = await loaders(info).agents.load((contact["workspace_id"], agent_id)) if agent_id else None
    return Agent.of(found) if found else None


@strawberry.type
class Contact:
    doc: strawberry.Private[Mapping[str, Any]]  # a stored contact, or a ContactDoc a turn returned

    @strawberry.field(description="the contact's stable id (a phone or BSUID change keeps it)")
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.doc["_id"])

    @strawberry.field(description="E.164; null for a customer who shares no phone number (see bsuid)")
    def phone(self) -> str | None:
        return self.doc.get("phone")

    @strawberry.field(description="the business-scoped user ID WhatsApp knows the customer by")
    def bsuid(self) -> str | None:
        return self.doc.get("bsuid")

    @strawberry.field(description="the BSUID shared by linked business portfolios, when Meta enables it")
    def parent_bsuid(self) -> str | None:
        return self.doc.get("parent_bsuid")

    @strawberry.field(description="the customer's WhatsApp username, for display only (it may change)")
    def username(self) -> str | None:
        return self.doc.get("username")

    @strawberry.field(description="merged into this contact (the same person found under two identities)")
    def merged_into(self) -> strawberry.ID | None:
        merged = self.doc.get("merged_into")
        return strawberry.ID(merged) if merged else None

    @strawberry.field
    def name(self) -> str | None:
        return self.doc.get("name")

    @strawberry.field(description="tag names")
    def tags(self) -> list[str]:
        return list(self.doc.get("tags", []))

    @strawberry.field
    def variables(self) -> JSON:
        return plain(self.doc.get("variables", {}))

    @strawberry.field
    def opted_in(self) -> bool:
        return bool(self.doc.get("opted_in"))

    @strawberry.field(description="the id of the agent who owns the conversation (see assignedAgent)")
    def assigned_agent_id(self) -> strawberry.ID | None:
        return self.doc.get("assigned_agent")

    @strawberry.field(description="the agent who owns the conversation; flows stay quiet meanwhile")
    async def assigned_agent(self, info: TenantInfo) -> Agent | None:
        return await assigned_agent_of(info, self.doc)

    @strawberry.field(
        description="the agent who owns the conversation",
        deprecation_reason="assignedAgent is the Agent now; use it (and assignedAgentId for the id)",
    )
    async def agent(self, info: TenantInfo) -> Agent | None:
        return await assigned_agent_of(info, self.doc)

    @strawberry.field(
        description="how and by whom the contact was assigned: {agent_id, source, team, by, at}"
    )
    def assignment(self) -> JSON | None:
        return plain(self.doc.get("assignment"))

    @strawberry.field(description="the last consent given: {at, source: flow|api|keyword|import, ...}")
    def opt_in(self) -> JSON | None:
        return plain(self.doc.get("opt_in"))

    @strawberry.field(description="the last opt-out: {at, source, keyword, message_id, by}")
    def opt_out(self) -> JSON | None:
        return plain(self.doc.get("opt_out"))

    @strawberry.field(description="every consent change, oldest first (the latest 50)")
    def consent_log(self) -> JSON:
        return plain(self.doc.get("consent_log") or [])

    @strawberry.field(description="external profile updates still to make (Klaviyo), with their last error")
    def external_sync(self) -> JSON:
        return plain(self.doc.get("external_sync") or [])

    @strawberry.field
    def last_inbound_at(self) -> datetime | None:
        return self.doc.get("last_inbound_at")

    @strawberry.field(description="the 24-hour customer service window is open")
    def window_open(self, info: TenantInfo) -> bool:
        return window_open(self.doc.get("last_inbound_at"), info.context.services.clock.now())

    @strawberry.field
    def version(self) -> int:
        return self.doc.get("version", 0)

    @strawberry.field
    def runs(self) -> list[Run]:
        contact_id = self.doc["_id"]
        return [
            Run(doc={**r, "contact_id": contact_id, "phone": self.doc.get("phone")})
            for r in self.doc.get("runs", [])
        ]
