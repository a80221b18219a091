"""GraphQL surface of webhook and inbound (keyword) triggers; mixed into the root types in ``schema.py``."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

import strawberry
from strawberry.scalars import JSON

from server.errors import InvalidInput
from server.graphql.context import TenantInfo
from server.graphql.permissions import ADMIN_ONLY
from server.operations import workspaces as workspace_ops
from server.triggers import inbound as inbound_ops
from server.triggers import webhooks as webhook_ops
from server.triggers.signatures import scheme_of


@strawberry.type(
    description="POST JSON to `url`, signed with `secret`, to start the flow for a contact; the secret "
    "is shown once, by createWebhookTrigger and rotateWebhookTriggerSecret"
)
class WebhookTrigger:
    doc: strawberry.Private[dict[str, Any]]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.doc["_id"])

    @strawberry.field
    def url(self, info: TenantInfo) -> str:
        return f"{info.context.base_url()}/hooks/{self.doc['_id']}"

    @strawberry.field(
        description="HMAC key for X-Konvo-Signature / X-Shopify-Hmac-Sha256, or the token; only in the "
        "answer of createWebhookTrigger and rotateWebhookTriggerSecret, null when read later"
    )
    def secret(self) -> str | None:
        return self.doc.get("secret")

    @strawberry.field(
        description="how requests are authenticated: konvo (X-Konvo-Signature: t=<unix>,v1=<hex HMAC-SHA256 "
        "of '<t>.<body>'>, 5 minutes' tolerance, each signature used once), konvo_legacy (hex HMAC-SHA256 of "
        "the body; triggers created before timestamps), shopify or token"
    )
    def signature_scheme(self) -> str:
        return scheme_of(self.doc)

    @strawberry.field
    def flow_id(self) -> strawberry.ID:
        return strawberry.ID(self.doc["flow_id"])

    @strawberry.field(
        description="{phone, default_country, variables: {name: path}, idempotency_key, signature}"
    )
    def mapping(self) -> JSON:
        return self.doc["mapping"]

    @strawberry.field
    def created_at(self) -> datetime:
        return self.doc["created_at"]

    @strawberry.field(
        description="the number its runs talk through; null: the flow's channel, else the workspace's default"
    )
    def channel_id(self) -> strawberry.ID | None:
        return self.doc.get("channel_id")


@strawberry.enum
class InboundTriggerKind(Enum):
    KEYWORD = "KEYWORD"
    ANY_MESSAGE = "ANY_MESSAGE"


@strawberry.enum
class KeywordMatch(Enum):
    EXACT = "EXACT"
    CONTAINS = "CONTAINS"


@strawberry.type(description="starts a flow on a customer's message when no run waits for a reply")
class InboundTrigger:
    id: strawberry.ID
    flow_id: strawberry.ID
    kind: InboundTriggerKind
    match: KeywordMatch
    keywords: list[str]
    priority: int
    enabled: bool
    created_at: datetime

    @classmethod
    def of(cls, doc: dict[str, Any]) -> InboundTrigger:
        return cls(
            id=strawberry.ID(doc["_id"]),
            flow_id=strawberry.ID(doc["flow_id"]),
            kind=InboundTriggerKind(doc["kind"]),
            match=KeywordMatch(doc.get("match") or "EXACT"),
            keywords=list(doc.get("keywords") or []),
            priority=int(doc.get("priority") or 0),
            enabled=bool(doc.get("enabled", True)),
            created_at=doc["created_at"],
        )


@strawberry.input(description="on create, flowId is required; on update, give only what changes")
class InboundTriggerInput:
    flow_id: strawberry.ID | None = None
    kind: InboundTriggerKind | None = None
    match: KeywordMatch | None = None
    keywords: list[str] | None = None
    priority: int | None = None
    enabled: bool | None = None


def _fields(data: InboundTriggerInput) -> dict[str, Any]:
    raw = {
        "flow_id": str(data.flow_id) if data.flow_id is not None else None,
        "kind": data.kind.value if data.kind else None,
        "match": data.match.value if data.match else None,
        "keywords": data.keywords,
        "priority": data.priority,
        "enabled": data.enabled,
    }
    return {k: v for k, v in raw.items() if v is not None}


@strawberry.type
class TriggerQuery:
    @strawberry.field(permission_classes=ADMIN_ONLY, description="webhook triggers (all, or of one flow)")
    async def webhook_triggers(
        self, info: TenantInfo, flow_id: strawberry.ID | None = None
    ) -> list[WebhookTrigger]:
        ctx = info.context
        found = await ctx.services.webhooks.list(ctx.workspace(), flow_id and str(flow_id))
        return [WebhookTrigger(doc=d) for d in found]

    @strawberry.field(
        permission_classes=ADMIN_ONLY, description="inbound triggers in the order they are tried"
    )
    async def inbound_triggers(self, info: TenantInfo) -> list[InboundTrigger]:
        ctx = info.context
        return [InboundTrigger.of(d) for d in await ctx.services.inbound.list(ctx.workspace())]


@strawberry.type
class TriggerMutation:
    @strawberry.mutation(
        permission_classes=ADMIN_ONLY,
        description="a URL that starts the flow; `secret` may be given (e.g. Shopify's signing key)",
    )
    async def create_webhook_trigger(
        self,
        info: TenantInfo,
        flow_id: strawberry.ID,
        mapping: JSON,
        secret: str | None = None,
        channel_id: strawberry.ID | None = None,
    ) -> WebhookTrigger:
        ctx = info.context
        document = await webhook_ops.create_webhook_trigger(
            ctx.services, ctx.admin_workspace(), str(flow_id), mapping, secret, channel_id and str(channel_id)
        )
        return WebhookTrigger(doc=document)

    @strawberry.mutation(
        permission_classes=ADMIN_ONLY,
        description="the number the trigger's runs talk through (null: the flow's channel, else the "
        "workspace's default)",
    )
    async def set_webhook_trigger_channel(
        self, info: TenantInfo, id: strawberry.ID, channel_id: strawberry.ID | None = None
    ) -> WebhookTrigger:
        ctx = info.context
        document = await webhook_ops.set_webhook_trigger_channel(
            ctx.services, ctx.admin_workspace(), str(id), channel_id and str(channel_id)
        )
        return WebhookTrigger(doc=document)

    @strawberry.mutation(
        permission_classes=ADMIN_ONLY,
        description="how the trigger's requests are signed: konvo (timestamped, each signature used once), "
        "konvo_legacy, shopify or token",
    )
    async def set_webhook_trigger_signature(
        self, info: TenantInfo, id: strawberry.ID, signature: str
    ) -> WebhookTrigger:
        ctx = info.context
        document = await webhook_ops.set_signature_scheme(
            ctx.services, ctx.admin_workspace(), str(id), signature
        )
        return WebhookTrigger(doc=document)

    @strawberry.mutation(
        permission_classes=ADMIN_ONLY,
        description="a new secret for the trigger (the old one stops working), shown this once; "
        "`secret` may be given (e.g. Shopify's new signing key)",
    )
    async def rotate_webhook_trigger_secret(
        self, info: TenantInfo, id: strawberry.ID, secret: str | None = None
    ) -> WebhookTrigger:
        ctx = info.context
        document = await webhook_ops.rotate_webhook_trigger_secret(
            ctx.services, ctx.admin_workspace(), str(id), secret
        )
        return WebhookTrigger(doc=document)

    @strawberry.mutation(permission_classes=ADMIN_ONLY)
    async def delete_webhook_trigger(self, info: TenantInfo, id: strawberry.ID) -> bool:
        ctx = info.context
        return await webhook_ops.delete_webhook_trigger(ctx.services, ctx.admin_workspace(), str(id))

    @strawberry.mutation(
        permission_classes=ADMIN_ONLY,
        description="the country national phone numbers belong to (ISO 3166, e.g. ES): in API arguments, "
        "imports and webhook payloads",
    )
    async def set_default_country(self, info: TenantInfo, country: str | None) -> str | None:
        ctx = info.context
        return await workspace_ops.set_default_country(ctx.services, ctx.admin_workspace(), country)

    @strawberry.mutation(permission_classes=ADMIN_ONLY)
    async def create_inbound_trigger(self, info: TenantInfo, input: InboundTriggerInput) -> InboundTrigger:
        ctx = info.context
        fields = _fields(input)
        flow_id = fields.pop("flow_id", None)
        if flow_id is None:
            raise InvalidInput("flowId: which flow the trigger starts", field="flowId")
        document = await inbound_ops.create_inbound_trigger(
            ctx.services, ctx.admin_workspace(), flow_id, fields
        )
        return InboundTrigger.of(document)

    @strawberry.mutation(permission_classes=ADMIN_ONLY)
    async def update_inbound_trigger(
        self, info: TenantInfo, id: strawberry.ID, input: InboundTriggerInput
    ) -> InboundTrigger:
        ctx = info.context
        document = await inbound_ops.update_inbound_trigger(
            ctx.services, ctx.admin_workspace(), str(id), _fields(input)
        )
        return InboundTrigger.of(document)

    @strawberry.mutation(permission_classes=ADMIN_ONLY)
    async def delete_inbound_trigger(self, info: TenantInfo, id: strawberry.ID) -> bool:
        ctx = info.context
        return await inbound_ops.delete_inbound_trigger(ctx.services, ctx.admin_workspace(), str(id))
