"""GraphQL for WhatsApp channels and template review: connect a number, submit and sync templates.

Mixins like ``server/graphql/catalog.py``: the root ``Query``/``Mutation`` inherit them. Channel
secrets (access token, app secret) are write-only: no type here returns them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from server.graphql.catalog import Template
from server.graphql.permissions import ADMIN_ONLY
from server.operations import channels as channel_ops
from server.operations import templates as template_ops
from server.operations.channels import WEBHOOK_PATH
from server.store.channels import webhook_verified


@strawberry.type
class WhatsAppChannel:
    id: strawberry.ID
    phone_number_id: str
    waba_id: str
    display_phone: str | None
    base_url: str
    api_version: str
    throughput_per_second: int
    webhook_url: str = strawberry.field(description="give Meta this callback URL (path alone when unknown)")
    verify_token: str | None = strawberry.field(
        default=None, description="the webhook verify token; returned only by connectWhatsApp"
    )
    webhook_verified: bool = strawberry.field(
        default=True,
        description="Meta completed the verification handshake on webhookUrl; until then the webhook "
        "refuses events (403)",
    )
    webhook_verified_at: datetime | None = strawberry.field(
        default=None, description="when the handshake was completed (null for channels older than the check)"
    )
    business_id: str | None = strawberry.field(
        default=None,
        description="the business portfolio of the number: its messaging limit is shared by all its numbers",
    )

    @classmethod
    def of(cls, doc: dict[str, Any], base: str = "", with_token: bool = False) -> WhatsAppChannel:
        return cls(
            id=strawberry.ID(doc["_id"]),
            phone_number_id=doc["phone_number_id"],
            waba_id=doc["waba_id"],
            display_phone=doc.get("display_phone"),
            base_url=doc["base_url"],
            api_version=doc["api_version"],
            throughput_per_second=int(doc["throughput_per_second"]),
            webhook_url=base + WEBHOOK_PATH.format(channel_id=doc["_id"]),
            verify_token=doc["verify_token"] if with_token else None,
            webhook_verified=webhook_verified(doc),
            webhook_verified_at=doc.get("webhook_verified_at"),
            business_id=doc.get("business_id"),
        )


@strawberry.input
class ConnectWhatsAppInput:
    phone_number_id: str
    waba_id: str
    access_token: str
    app_secret: str
    verify_token: str | None = strawberry.field(default=None, description="generated when not given")
    display_phone: str | None = None
    base_url: str | None = strawberry.field(default=None, description="a provider's Graph-compatible URL")
    api_version: str | None = None
    auth_header: str | None = strawberry.field(default=None, description="e.g. D360-API-KEY for a provider")
    auth_scheme: str | None = strawberry.field(default=None, description="'Bearer' unless given; '' for none")
    throughput_per_second: int | None = strawberry.field(default=None, description="80 unless upgraded")
    business_id: str | None = strawberry.field(
        default=None, description="the Meta business portfolio id (messaging limits are per portfolio)"
    )


def _base(info: strawberry.Info) -> str:
    request = getattr(info.context, "request", None)
    url = getattr(request, "base_url", None)
    return str(url).rstrip("/") if url else ""


@strawberry.type
class ChannelsQuery:
    @strawberry.field(permission_classes=ADMIN_ONLY)
    async def whatsapp_channels(self, info: strawberry.Info) -> list[WhatsAppChannel]:
        ctx = info.context
        found = await channel_ops.whatsapp_channels(ctx.runtime, ctx.workspace())
        return [WhatsAppChannel.of(d, _base(info)) for d in found]


@strawberry.type
class ChannelsMutation:
    @strawberry.mutation(
        name="connectWhatsApp",
        permission_classes=ADMIN_ONLY,
        description="connect a WhatsApp Cloud API number",
    )
    async def connect_whatsapp(self, info: strawberry.Info, input: ConnectWhatsAppInput) -> WhatsAppChannel:
        ctx = info.context
        data = {k: v for k, v in vars(input).items() if v is not None}
        document = await channel_ops.connect_whatsapp(ctx.runtime, ctx.workspace(), data)
        return WhatsAppChannel.of(document, _base(info), with_token=True)

    @strawberry.mutation(permission_classes=ADMIN_ONLY, description="send a draft or fixed template to Meta")
    async def submit_template(self, info: strawberry.Info, id: strawberry.ID) -> Template:
        ctx = info.context
        return Template.of(await template_ops.submit_template(ctx.runtime, ctx.workspace(), str(id)))

    @strawberry.mutation(
        permission_classes=ADMIN_ONLY, description="read every template's status from Meta now"
    )
    async def sync_templates(self, info: strawberry.Info) -> list[Template]:
        ctx = info.context
        return [Template.of(d) for d in await template_ops.sync_templates(ctx.runtime, ctx.workspace())]
