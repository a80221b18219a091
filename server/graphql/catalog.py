"""GraphQL surface of the workspace catalog: tags, fields, agents, templates (API.md).

``CatalogQuery`` and ``CatalogMutation`` are plain ``@strawberry.type`` classes that the root
``Query``/``Mutation`` in ``schema.py`` inherit from, so this module owns its resolvers alone.
Reading the catalog is open to AGENT keys (an inbox tags contacts, sets typed variables, assigns
agents and may reopen a window with a template); changing it is ADMIN only.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

import strawberry
from strawberry.scalars import JSON

from server.clock import as_utc
from server.graphql.context import TenantInfo
from server.graphql.permissions import ADMIN_ONLY, ANY_ROLE
from server.operations import agents as agent_ops
from server.operations import fields as field_ops
from server.operations import tags as tag_ops
from server.operations import template_drafts as draft_ops
from server.operations import templates as template_ops


@strawberry.enum
class TagKind(Enum):
    MARKETING = "MARKETING"
    SUPPORT = "SUPPORT"


@strawberry.enum
class FieldType(Enum):
    TEXT = "TEXT"
    NUMBER = "NUMBER"
    BOOLEAN = "BOOLEAN"
    DATE = "DATE"
    FIXED = "FIXED"


@strawberry.enum
class TemplateCategory(Enum):
    MARKETING = "MARKETING"
    UTILITY = "UTILITY"
    AUTHENTICATION = "AUTHENTICATION"


@strawberry.enum
class TemplateStatus(Enum):
    DRAFT = "DRAFT"
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    PAUSED = "PAUSED"
    DISABLED = "DISABLED"
    FLAGGED = "FLAGGED"


@strawberry.type
class Tag:
    id: strawberry.ID
    name: str
    kind: TagKind

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Tag:
        return cls(id=strawberry.ID(doc["_id"]), name=doc["name"], kind=TagKind(doc["kind"]))


@strawberry.type(description="a link from a field to a property of an external profile (Klaviyo)")
class ExternalLink:
    system: str
    property: str

    @strawberry.field(description="the external system (same as system)")
    def provider(self) -> str:
        return self.system


@strawberry.input
class ExternalLinkInput:
    system: str | None = None
    provider: str | None = strawberry.field(default=None, description="alias of system: klaviyo")
    property: str


@strawberry.type(description="a typed contact variable: {{contact.<name>}}")
class Field:
    id: strawberry.ID
    name: str
    type: FieldType
    options: list[str]
    external: ExternalLink | None

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Field:
        link = doc.get("external")
        return cls(
            id=strawberry.ID(doc["_id"]),
            name=doc["name"],
            type=FieldType(doc["type"]),
            options=list(doc.get("options") or []),
            external=ExternalLink(system=link["system"], property=link["property"]) if link else None,
        )


@strawberry.type
class Agent:
    id: strawberry.ID
    email: str
    name: str
    available: bool
    teams: list[str]

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Agent:
        return cls(
            id=strawberry.ID(doc["_id"]),
            email=doc["email"],
            name=doc["name"],
            available=bool(doc.get("available", True)),
            teams=list(doc.get("teams") or []),
        )


@strawberry.type
class Template:
    id: strawberry.ID
    name: str
    language: str
    category: TemplateCategory
    status: TemplateStatus
    rejection_reason: str | None
    components: JSON
    updated_at: datetime | None = None
    meta_id: str | None = strawberry.field(default=None, description="Meta's template id once submitted")
    submit_error: str | None = strawberry.field(
        default=None, description="why Meta refused the last submission (not a review rejection)"
    )

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Template:
        updated = doc.get("updated_at")
        return cls(
            meta_id=doc.get("meta_id"),
            submit_error=doc.get("submit_error"),
            id=strawberry.ID(doc["_id"]),
            name=doc["name"],
            language=doc["language"],
            category=TemplateCategory(doc["category"]),
            status=TemplateStatus(doc["status"]),
            rejection_reason=doc.get("rejection_reason"),
            components=JSON(doc.get("components") or []),
            updated_at=as_utc(updated) if updated else None,
        )


@strawberry.input(description="a WhatsApp template in Meta's component format (HEADER/BODY/FOOTER/BUTTONS)")
class TemplateInput:
    name: str
    language: str
    category: TemplateCategory
    components: JSON


@strawberry.type
class CatalogQuery:
    @strawberry.field(permission_classes=ANY_ROLE)
    async def tags(self, info: TenantInfo) -> list[Tag]:
        ctx = info.context
        return [Tag.of(d) for d in await tag_ops.list_tags(ctx.services, ctx.workspace())]

    @strawberry.field(permission_classes=ANY_ROLE)
    async def fields(self, info: TenantInfo) -> list[Field]:
        ctx = info.context
        return [Field.of(d) for d in await field_ops.list_fields(ctx.services, ctx.workspace())]

    @strawberry.field(permission_classes=ANY_ROLE)
    async def agents(self, info: TenantInfo) -> list[Agent]:
        ctx = info.context
        return [Agent.of(d) for d in await agent_ops.list_agents(ctx.services, ctx.workspace())]

    @strawberry.field(permission_classes=ANY_ROLE)
    async def templates(self, info: TenantInfo) -> list[Template]:
        ctx = info.context
        return [Template.of(d) for d in await draft_ops.list_templates(ctx.services, ctx.workspace())]


@strawberry.type
class CatalogMutation:
    @strawberry.mutation(permission_classes=ADMIN_ONLY)
    async def create_tag(self, info: TenantInfo, name: str, kind: TagKind) -> Tag:
        ctx = info.context
        return Tag.of(await tag_ops.create_tag(ctx.services, ctx.admin_workspace(), name, kind.value))

    @strawberry.mutation(
        permission_classes=ADMIN_ONLY, description="refused (CONFLICT) while a flow uses the tag"
    )
    async def rename_tag(self, info: TenantInfo, id: strawberry.ID, name: str) -> Tag:
        ctx = info.context
        return Tag.of(await tag_ops.rename_tag(ctx.services, ctx.admin_workspace(), str(id), name))

    @strawberry.mutation(
        permission_classes=ADMIN_ONLY,
        description="refused (CONFLICT, naming the flows) while a flow uses the tag",
    )
    async def delete_tag(self, info: TenantInfo, id: strawberry.ID) -> bool:
        ctx = info.context
        return await tag_ops.delete_tag(ctx.services, ctx.admin_workspace(), str(id))

    @strawberry.mutation(permission_classes=ADMIN_ONLY)
    async def create_field(
        self,
        info: TenantInfo,
        name: str,
        type: FieldType,
        options: list[str] | None = None,
        external: ExternalLinkInput | None = None,
    ) -> Field:
        ctx = info.context
        link = (
            {"system": external.provider or external.system or "klaviyo", "property": external.property}
            if external
            else None
        )
        document = await field_ops.create_field(
            ctx.services, ctx.admin_workspace(), name, type.value, options, link
        )
        return Field.of(document)

    @strawberry.mutation(permission_classes=ADMIN_ONLY)
    async def create_agent(
        self, info: TenantInfo, email: str, name: str, teams: list[str] | None = None
    ) -> Agent:
        ctx = info.context
        return Agent.of(await agent_ops.create_agent(ctx.services, ctx.admin_workspace(), email, name, teams))

    @strawberry.mutation(
        permission_classes=ADMIN_ONLY, description="the agent takes (or stops taking) new conversations"
    )
    async def set_agent_availability(self, info: TenantInfo, id: strawberry.ID, available: bool) -> Agent:
        ctx = info.context
        return Agent.of(
            await agent_ops.set_agent_availability(ctx.services, ctx.admin_workspace(), str(id), available)
        )

    @strawberry.mutation(permission_classes=ADMIN_ONLY)
    async def create_template(self, info: TenantInfo, input: TemplateInput) -> Template:
        ctx = info.context
        data = {
            "name": input.name,
            "language": input.language,
            "category": input.category.value,
            "components": input.components,
        }
        return Template.of(await draft_ops.create_template(ctx.services, ctx.admin_workspace(), data))

    @strawberry.mutation(
        permission_classes=ADMIN_ONLY,
        description="edit a draft or a rejected template; a rejected one is resubmitted to Meta at once "
        "(flows waiting on it go from TEMPLATE_REJECTED back to PENDING_APPROVAL)",
    )
    async def update_template(self, info: TenantInfo, id: strawberry.ID, input: TemplateInput) -> Template:
        ctx = info.context
        data = {
            "name": input.name,
            "language": input.language,
            "category": input.category.value,
            "components": input.components,
        }
        updated = await template_ops.update_template(ctx.services, ctx.admin_workspace(), str(id), data)
        return Template.of(updated)
