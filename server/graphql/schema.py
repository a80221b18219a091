"""The GraphQL schema: queries, mutations and subscriptions of API.md, scoped to the key's workspace."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping
from enum import Enum
from typing import Annotated, Any

import strawberry
from strawberry.extensions import SchemaExtension
from strawberry.scalars import JSON

from server.errors import NotFound
from server.graphql.analytics import AnalyticsQuery, AnalyticsSubscription
from server.graphql.api_keys import ApiKeyMutation, ApiKeyQuery
from server.graphql.arguments import Phone, WhatsappId, default_omitted_to_null
from server.graphql.broadcasts import BroadcastMutation, BroadcastQuery, BroadcastSubscription
from server.graphql.catalog import CatalogMutation, CatalogQuery
from server.graphql.channels import ChannelsMutation, ChannelsQuery
from server.graphql.contact_imports import ImportMutation, ImportQuery, ImportSubscription
from server.graphql.contacts import ContactsMutation, ContactsQuery
from server.graphql.context import TenantInfo
from server.graphql.errors import CodedErrors, CodedSchema
from server.graphql.flow_document import all_types as flow_document_types
from server.graphql.inbound_kinds import LocationInput, ReactionInput, sandbox_share
from server.graphql.inbox import InboxMutation, InboxQuery, InboxSubscription
from server.graphql.loaders import BatchLoads
from server.graphql.messages import OutboundMessage
from server.graphql.pagination import PageInfo, decode_cursor, encode_cursor, page_size
from server.graphql.permissions import ADMIN_ONLY, ANY_ROLE
from server.graphql.run_steps import ALL_STEP_TYPES
from server.graphql.runs import RunStatus
from server.graphql.sending import SendingMutation, SendingQuery
from server.graphql.simulator import SimulatorQuery
from server.graphql.triggers import TriggerMutation, TriggerQuery
from server.graphql.types import (
    Contact,
    Flow,
    FlowIssue,
    Run,
    Workspace,
)
from server.graphql.workspaces import WorkspaceMutation
from server.operations import contacts as contact_ops
from server.operations import flows as flow_ops
from server.operations.contact_identifiers import ContactRef, contact_key, find_contact_key, sandbox_customer
from server.pubsub import contact_topic, run_topic


@strawberry.enum(description="what publishing does to runs under way on older versions")
class InFlightPolicy(Enum):
    FINISH = "finish"
    EXIT = "exit"


@strawberry.type
class RunEdge:
    cursor: str
    node: Run


@strawberry.type
class RunConnection:
    edges: list[RunEdge]
    page_info: PageInfo


@strawberry.type
class Query(
    CatalogQuery,
    ApiKeyQuery,
    ChannelsQuery,
    ContactsQuery,
    ImportQuery,
    InboxQuery,
    TriggerQuery,
    BroadcastQuery,
    SendingQuery,
    AnalyticsQuery,
    SimulatorQuery,
):
    @strawberry.field(permission_classes=ANY_ROLE)
    async def workspace(self, info: TenantInfo) -> Workspace:
        ctx = info.context
        found = await ctx.services.workspaces.get(ctx.workspace())
        if found is None:
            raise NotFound("workspace not found")
        return Workspace.of(found)

    @strawberry.field(permission_classes=ADMIN_ONLY)
    async def flows(self, info: TenantInfo) -> list[Flow]:
        ctx = info.context
        return [Flow(doc=f) for f in await ctx.services.flows.list(ctx.workspace())]

    @strawberry.field(permission_classes=ADMIN_ONLY)
    async def flow(self, info: TenantInfo, id: strawberry.ID) -> Flow | None:
        ctx = info.context
        found = await ctx.services.flows.get(ctx.workspace(), str(id))
        return Flow(doc=found) if found else None

    @strawberry.field(permission_classes=ANY_ROLE)
    async def contact(
        self,
        info: TenantInfo,
        id: strawberry.ID | None = None,
        phone: Phone = None,
        whatsapp_id: WhatsappId = None,
    ) -> Contact | None:
        ctx = info.context
        workspace_id = ctx.workspace()
        found: Mapping[str, Any] | None
        if phone is not None or whatsapp_id is not None:
            key = await find_contact_key(ctx.services, workspace_id, ContactRef(phone, whatsapp_id))
            found = await ctx.services.contacts.load(key) if key is not None else None
        elif id is not None:
            found = await ctx.services.contacts.get(workspace_id, str(id))
        else:
            return None
        return Contact(doc=found) if found and found.get("erased_at") is None else None

    @strawberry.field(permission_classes=ANY_ROLE)
    async def run(self, info: TenantInfo, id: strawberry.ID) -> Run | None:
        ctx = info.context
        workspace_id = ctx.workspace()
        contact = await ctx.services.contacts.find_run(workspace_id, str(id))
        if contact is not None:
            run = next(r for r in contact["runs"] if r["id"] == str(id))
            return Run(doc={**run, "contact_id": contact["_id"], "phone": contact.get("phone")})
        archived = await ctx.services.runs.get(workspace_id, str(id))
        return Run(doc=archived) if archived else None

    @strawberry.field(permission_classes=ANY_ROLE, description="runs, newest first, filtered and paginated")
    async def runs(
        self,
        info: TenantInfo,
        flow_id: strawberry.ID | None = None,
        contact_id: strawberry.ID | None = None,
        status: RunStatus | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> RunConnection:
        ctx = info.context
        limit = page_size(first)
        cursor = decode_cursor(after)
        found = await ctx.services.runs.page(
            ctx.workspace(),
            flow_id and str(flow_id),
            contact_id and str(contact_id),
            status.value if status else None,
            str(cursor[0]) if cursor else None,
            limit + 1,
        )
        edges = [RunEdge(cursor=encode_cursor([r["id"]]), node=Run(doc=r)) for r in found[:limit]]
        return RunConnection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=len(found) > limit, end_cursor=edges[-1].cursor if edges else None
            ),
        )

    @strawberry.field(
        permission_classes=ANY_ROLE,
        description="what the sandbox channel sent to this customer, oldest first",
    )
    async def sandbox_outbox(
        self, info: TenantInfo, phone: Phone, whatsapp_id: WhatsappId = None
    ) -> list[OutboundMessage]:
        ctx = info.context
        if phone is None and whatsapp_id is None:
            return []
        key = await find_contact_key(ctx.services, ctx.workspace(), ContactRef(phone, whatsapp_id))
        found = await ctx.services.messages.outbound_for(key, "sandbox") if key is not None else []
        return [OutboundMessage(doc=m) for m in found]


@strawberry.type
class Mutation(
    CatalogMutation,
    ApiKeyMutation,
    ChannelsMutation,
    ContactsMutation,
    ImportMutation,
    InboxMutation,
    TriggerMutation,
    BroadcastMutation,
    WorkspaceMutation,
    SendingMutation,
):
    @strawberry.mutation(permission_classes=ADMIN_ONLY)
    async def import_flow(self, info: TenantInfo, definition: JSON) -> Flow:
        ctx = info.context
        return Flow(doc=await flow_ops.import_flow(ctx.services, ctx.admin_workspace(), definition))

    @strawberry.mutation(permission_classes=ADMIN_ONLY)
    async def update_flow_draft(self, info: TenantInfo, id: strawberry.ID, definition: JSON) -> Flow:
        ctx = info.context
        return Flow(doc=await flow_ops.update_draft(ctx.services, ctx.admin_workspace(), str(id), definition))

    @strawberry.mutation(permission_classes=ADMIN_ONLY)
    async def validate_flow(self, info: TenantInfo, id: strawberry.ID) -> list[FlowIssue]:
        ctx = info.context
        flow = await flow_ops.require_flow(ctx.services, ctx.admin_workspace(), str(id))
        return [FlowIssue.of(i) for i in await flow_ops.flow_issues(ctx.services, ctx.workspace(), flow)]

    @strawberry.mutation(permission_classes=ADMIN_ONLY)
    async def publish_flow(
        self, info: TenantInfo, id: strawberry.ID, in_flight: InFlightPolicy = InFlightPolicy.FINISH
    ) -> Flow:
        ctx = info.context
        return Flow(
            doc=await flow_ops.publish_flow(ctx.services, ctx.admin_workspace(), str(id), in_flight.value)
        )

    @strawberry.mutation(permission_classes=ADMIN_ONLY)
    async def archive_flow(self, info: TenantInfo, id: strawberry.ID) -> Flow:
        ctx = info.context
        return Flow(doc=await flow_ops.archive_flow(ctx.services, ctx.admin_workspace(), str(id)))

    @strawberry.mutation(
        permission_classes=ADMIN_ONLY,
        description="start a run now; channelId: the number it talks through (default: the flow's "
        "channel, else the workspace's default); variables fill trigger placeholders; contact "
        "{fields: {name: value}, tags: [name]} sets contact fields (typed like setVariable) and adds "
        "tags in the turn that starts the run",
    )
    async def start_flow(
        self,
        info: TenantInfo,
        flow_id: strawberry.ID,
        phone: Phone,
        variables: JSON | None = None,
        whatsapp_id: WhatsappId = None,
        contact: JSON | None = None,
        channel_id: strawberry.ID | None = None,
    ) -> Run:
        ctx = info.context
        who = ContactRef(phone, whatsapp_id)
        run = await contact_ops.start_flow(
            ctx.services,
            ctx.admin_workspace(),
            str(flow_id),
            who,
            variables,
            contact,
            channel_id and str(channel_id),
        )
        return Run(doc=run)

    @strawberry.mutation(
        permission_classes=ADMIN_ONLY,
        description="the WhatsApp channel the flow's runs talk through (null: the workspace's default); "
        "runs under way keep theirs",
    )
    async def set_flow_channel(
        self, info: TenantInfo, id: strawberry.ID, channel_id: strawberry.ID | None = None
    ) -> Flow:
        ctx = info.context
        flow = await flow_ops.set_flow_channel(
            ctx.services, ctx.admin_workspace(), str(id), channel_id and str(channel_id)
        )
        return Flow(doc=flow)

    @strawberry.mutation(permission_classes=ADMIN_ONLY)
    async def stop_run(self, info: TenantInfo, id: strawberry.ID) -> Run:
        ctx = info.context
        return Run(doc=await contact_ops.stop_run(ctx.services, ctx.admin_workspace(), str(id)))

    @strawberry.mutation(
        permission_classes=ADMIN_ONLY,
        description="the sandbox customer says something: text or a button id, or shares a location, "
        "sends a WhatsApp Flow's answer (flowResponse: the form's fields) or reacts to a message; "
        "replyTo quotes a message (its InboxMessage.id); a customer who shares no phone number is "
        "played by their BSUID (and username), as WhatsApp reports them",
    )
    async def sandbox_inbound(
        self,
        info: TenantInfo,
        phone: Phone,
        text: str | None = None,
        button_id: str | None = None,
        location: LocationInput | None = None,
        flow_response: JSON | None = None,
        reaction: ReactionInput | None = None,
        reply_to: strawberry.ID | None = None,
        bsuid: Annotated[str | None, strawberry.argument(description="the customer's BSUID")] = None,
        username: Annotated[str | None, strawberry.argument(description="the username shown")] = None,
    ) -> bool:
        ctx = info.context
        shared = sandbox_share(location, flow_response, reaction, reply_to)
        who = await sandbox_customer(ctx.services, ctx.workspace(), phone, bsuid, username)
        await contact_ops.customer_says(ctx.services, ctx.workspace(), who, text, button_id, shared=shared)
        return True


@strawberry.type
class Subscription(InboxSubscription, BroadcastSubscription, AnalyticsSubscription, ImportSubscription):
    @strawberry.subscription(
        permission_classes=ANY_ROLE,
        description="the contact's current state at once, then every committed change, in order",
    )
    async def contact_updated(
        self, info: TenantInfo, phone: Phone, whatsapp_id: WhatsappId = None
    ) -> AsyncGenerator[Contact, None]:
        ctx = info.context
        workspace_id = ctx.workspace()
        key = await contact_key(ctx.services, workspace_id, ContactRef(phone, whatsapp_id))
        updates = ctx.services.pubsub.subscribe(contact_topic(key))
        try:
            current = await ctx.services.contacts.load(key)
            seen = current["version"] if current else -1
            if current is not None:
                yield Contact(doc=current)
            async for document in updates:
                if document.get("version", 0) > seen:
                    seen = document["version"]
                    yield Contact(doc=document)
        finally:
            await updates.aclose()

    @strawberry.subscription(
        permission_classes=ANY_ROLE, description="every change of a run in this workspace (or one flow)"
    )
    async def run_updated(
        self, info: TenantInfo, flow_id: strawberry.ID | None = None
    ) -> AsyncGenerator[Run, None]:
        ctx = info.context
        updates = ctx.services.pubsub.subscribe(run_topic(ctx.workspace()))
        try:
            async for run in updates:
                if flow_id is None or run.get("flow_id") == str(flow_id):
                    yield Run(doc=run)
        finally:
            await updates.aclose()


def build_schema(*extensions: Callable[[], SchemaExtension]) -> strawberry.Schema:
    """The schema with request extensions (limits) in front of batched loads and error coding.

    ``server.graphql.limits`` adds the served limits; ``schema`` below has none, for exporting
    the SDL and for in-process tests.
    """
    default_omitted_to_null(Query, Mutation, Subscription)
    return CodedSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        # Types reached only through an interface (FlowNode, Step) must be named.
        types=[*flow_document_types(), *ALL_STEP_TYPES],
        extensions=[*extensions, BatchLoads, CodedErrors],
    )


schema = build_schema()
