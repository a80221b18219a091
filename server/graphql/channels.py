"""GraphQL for WhatsApp channels and template review: connect, change, disconnect and choose
numbers; submit and sync templates.

Mixins like ``server/graphql/catalog.py``: the root ``Query``/``Mutation`` inherit them. Channel
secrets (access token, app secret) are write-only: no type here returns them.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

import strawberry

from server.graphql.catalog import Template
from server.graphql.context import TenantInfo
from server.graphql.permissions import ADMIN_ONLY
from server.operations import channels as channel_ops
from server.operations import templates as template_ops
from server.operations.channels import WEBHOOK_PATH
from server.store.channels import is_connected, webhook_verified


@strawberry.enum(description="whether a number sends and takes webhooks")
class ChannelStatus(Enum):
    CONNECTED = "connected"
    DISCONNECTED = strawberry.enum_value(
        "disconnected", description="sends nothing, its webhook answers 410; its messages and runs are kept"
    )


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
    status: ChannelStatus = ChannelStatus.CONNECTED
    disconnected_at: datetime | None = None
    created_at: datetime | None = None
    is_default: bool = strawberry.field(
        default=False,
        description="sends what names no channel of its own: runs started without a flow, trigger or "
        "broadcast channel, agent messages before the customer wrote (setDefaultWhatsAppChannel)",
    )
    business_id: str | None = strawberry.field(
        default=None,
        description="the business portfolio of the number: its messaging limit is shared by all its numbers",
    )

    @classmethod
    def of(
        cls, doc: dict[str, Any], base: str = "", with_token: bool = False, default_id: str | None = None
    ) -> WhatsAppChannel:
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
            status=ChannelStatus.CONNECTED if is_connected(doc) else ChannelStatus.DISCONNECTED,
            disconnected_at=doc.get("disconnected_at"),
            created_at=doc.get("created_at"),
            is_default=default_id == doc["_id"],
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


@strawberry.input(description="give only what changes; secrets are write-only")
class UpdateWhatsAppChannelInput:
    access_token: str | None = strawberry.field(default=None, description="token rotation")
    app_secret: str | None = strawberry.field(default=None, description="checks webhook signatures")
    display_phone: str | None = None
    base_url: str | None = strawberry.field(
        default=None, description="a provider's Graph-compatible URL, within the egress policy"
    )
    api_version: str | None = None
    auth_header: str | None = None
    auth_scheme: str | None = None
    throughput_per_second: int | None = strawberry.field(
        default=None, description="the number's throughput tier: 80, or 1000 once Meta upgraded it"
    )
    is_default: bool | None = strawberry.field(
        default=None, description="true: make it the workspace's default channel (setDefaultWhatsAppChannel)"
    )
    business_id: str | None = strawberry.field(
        default=None, description="the Meta business portfolio id (messaging limits are per portfolio)"
    )


def _given(data: object) -> dict[str, Any]:
    return {k: v for k, v in vars(data).items() if v is not None}


async def channel_view(info: TenantInfo, doc: dict[str, Any], with_token: bool = False) -> WhatsAppChannel:
    """A channel as the API shows it (``isDefault`` needs the workspace's current default)."""
    default_id = await info.context.services.channel.default_channel_id(doc["workspace_id"])
    return WhatsAppChannel.of(doc, info.context.base_url(), with_token=with_token, default_id=default_id)


@strawberry.type
class ChannelsQuery:
    @strawberry.field(permission_classes=ADMIN_ONLY, description="every connected number, oldest first")
    async def whatsapp_channels(
        self, info: TenantInfo, include_disconnected: bool = False
    ) -> list[WhatsAppChannel]:
        ctx = info.context
        found = await channel_ops.whatsapp_channels(ctx.services, ctx.workspace(), include_disconnected)
        default_id = await ctx.services.channel.default_channel_id(ctx.workspace())
        return [WhatsAppChannel.of(d, info.context.base_url(), default_id=default_id) for d in found]


@strawberry.type
class ChannelsMutation:
    @strawberry.mutation(
        name="connectWhatsApp",
        permission_classes=ADMIN_ONLY,
        description="connect a WhatsApp Cloud API number; a number the workspace already has is "
        "updated in place (same id and webhook URL, reconnected if it was disconnected)",
    )
    async def connect_whatsapp(self, info: TenantInfo, input: ConnectWhatsAppInput) -> WhatsAppChannel:
        ctx = info.context
        document = await channel_ops.connect_whatsapp(ctx.services, ctx.workspace(), _given(input))
        return await channel_view(info, document, with_token=True)

    @strawberry.mutation(
        name="updateWhatsAppChannel",
        permission_classes=ADMIN_ONLY,
        description="rotate the token or app secret, change the base URL (EGRESS_REFUSED outside the "
        "egress policy), display phone or throughput tier, or make it the default",
    )
    async def update_whatsapp_channel(
        self, info: TenantInfo, id: strawberry.ID, input: UpdateWhatsAppChannelInput
    ) -> WhatsAppChannel:
        ctx = info.context
        document = await channel_ops.update_whatsapp_channel(
            ctx.services, ctx.workspace(), str(id), _given(input)
        )
        return await channel_view(info, document)

    @strawberry.mutation(
        name="disconnectWhatsApp",
        permission_classes=ADMIN_ONLY,
        description="stop using a number: its secrets are dropped and its webhook answers 410; its "
        "messages and runs are kept, and what it would have sent goes through the default channel",
    )
    async def disconnect_whatsapp(self, info: TenantInfo, id: strawberry.ID) -> bool:
        ctx = info.context
        return await channel_ops.disconnect_whatsapp(ctx.services, ctx.workspace(), str(id))

    @strawberry.mutation(
        name="setDefaultWhatsAppChannel",
        permission_classes=ADMIN_ONLY,
        description="the number that sends what names no channel of its own",
    )
    async def set_default_whatsapp_channel(self, info: TenantInfo, id: strawberry.ID) -> WhatsAppChannel:
        ctx = info.context
        document = await channel_ops.set_default_channel(ctx.services, ctx.workspace(), str(id))
        return await channel_view(info, document)

    @strawberry.mutation(permission_classes=ADMIN_ONLY, description="send a draft or fixed template to Meta")
    async def submit_template(self, info: TenantInfo, id: strawberry.ID) -> Template:
        ctx = info.context
        return Template.of(await template_ops.submit_template(ctx.services, ctx.workspace(), str(id)))

    @strawberry.mutation(
        permission_classes=ADMIN_ONLY, description="read every template's status from Meta now"
    )
    async def sync_templates(self, info: TenantInfo) -> list[Template]:
        ctx = info.context
        return [Template.of(d) for d in await template_ops.sync_templates(ctx.services, ctx.workspace())]
