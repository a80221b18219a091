"""GraphQL surface of the inbox: conversations, agent messages, assignment, teams, ``inboxUpdated``.

Mixins the root ``Query``/``Mutation``/``Subscription`` inherit. Working the inbox is open to
AGENT keys (an AGENT key tied to an agent writes as that agent); teams and agents are managed
by ADMIN keys.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from datetime import datetime
from enum import Enum
from typing import Any

import strawberry
from strawberry.scalars import JSON

from server.errors import Forbidden, InvalidInput
from server.graphql.arguments import Phone, WhatsappId
from server.graphql.catalog import Agent
from server.graphql.contacts import caller
from server.graphql.context import Context, TenantInfo
from server.graphql.inbound_kinds import MessageLocation
from server.graphql.loaders import loaders
from server.graphql.messages import Message, OutboundMessage, RenderedMessage, rendered_of
from server.graphql.pagination import PageInfo, decode_cursor, encode_cursor, page_size
from server.graphql.permissions import ADMIN_ONLY, ANY_ROLE
from server.graphql.types import Contact, assigned_agent_of
from server.operations import assignment as ops
from server.operations import inbox as inbox_ops
from server.operations.contact_identifiers import ContactRef, find_contact_key
from server.pubsub import inbox_topic
from server.store.workspaces import AGENT
from server.window import window_open

SUPPORT_TAGS_TTL = 5.0


@strawberry.enum
class TeamPolicy(Enum):
    ROUND_ROBIN = "ROUND_ROBIN"
    LEAST_OPEN = "LEAST_OPEN"


@strawberry.enum(description="who wrote a message")
class MessageSender(Enum):
    CUSTOMER = "CUSTOMER"
    FLOW = "FLOW"
    AGENT = "AGENT"
    SYSTEM = "SYSTEM"


@strawberry.type
class Team:
    doc: strawberry.Private[dict[str, Any]]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.doc["_id"])

    @strawberry.field
    def name(self) -> str:
        return self.doc["name"]

    @strawberry.field
    def policy(self) -> TeamPolicy:
        return TeamPolicy(self.doc.get("policy") or "ROUND_ROBIN")

    @strawberry.field
    async def agents(self, info: TenantInfo) -> list[Agent]:
        found = await ops.team_members(info.context.services, self.doc["workspace_id"], self.doc["name"])
        return [Agent.of(a) for a in found]


@strawberry.type(
    description="a message in or out; status: received (in), accepted, sent, delivered, read, failed"
)
class InboxMessage(Message):
    doc: strawberry.Private[dict[str, Any]]

    @strawberry.field
    def sender(self) -> MessageSender:
        return MessageSender(inbox_ops.sender_of(self.doc))

    @strawberry.field
    def kind(self) -> str:
        return self.doc.get("kind") or "text"

    @strawberry.field(description="the text; for a template, its body with the parameters filled in")
    def text(self) -> str | None:
        return self.doc.get("text") or rendered_of(self.doc).get("body")

    @strawberry.field(description="the message as the customer sees it (header, body, footer, every button)")
    def rendered(self) -> RenderedMessage:
        return RenderedMessage(doc=rendered_of(self.doc))

    @strawberry.field
    def button_id(self) -> str | None:
        return self.doc.get("button_id")

    @strawberry.field
    def template(self) -> JSON | None:
        return self.doc.get("template")

    @strawberry.field
    def media(self) -> JSON | None:
        return self.doc.get("media")

    @strawberry.field(description="what went wrong, in one text (see errorCode, errorTitle, errorDetail)")
    def error(self) -> str | None:
        return self.doc.get("error")

    @strawberry.field
    def agent_id(self) -> strawberry.ID | None:
        return self.doc.get("agent_id")

    @strawberry.field
    def run_id(self) -> strawberry.ID | None:
        return self.doc.get("run_id")

    # --- what customers send besides text (docs/flows.md "Inbound messages") ---

    @strawberry.field(description="a location the customer shared (kind location)")
    def location(self) -> MessageLocation | None:
        return MessageLocation.of(self.doc.get("location"))

    @strawberry.field(description="contact cards the customer shared (kind contacts), as WhatsApp sent them")
    def contacts(self) -> JSON | None:
        return self.doc.get("contacts")

    @strawberry.field(description="a WhatsApp Flow's answer (kind nfm_reply): the form's fields")
    def flow_response(self) -> JSON | None:
        response = (self.doc.get("form") or {}).get("response")
        if not isinstance(response, dict):
            return None
        return JSON({k: v for k, v in response.items() if k != "flow_token"})

    @strawberry.field(description="a reaction (kind reaction): its emoji, empty when one was removed")
    def reaction(self) -> MessageReaction | None:
        reaction = self.doc.get("reaction")
        if not reaction or not reaction.get("message_id"):
            return None
        return MessageReaction(
            emoji=str(reaction.get("emoji") or ""),
            message_id=strawberry.ID(str(reaction["message_id"])),
            workspace_id=self.doc.get("workspace_id") or "",
        )

    @strawberry.field(description="the id of the message this one quotes (WhatsApp's context.id)")
    def quoted_id(self) -> strawberry.ID | None:
        quoted = (self.doc.get("context") or {}).get("id")
        return strawberry.ID(str(quoted)) if quoted else None

    @strawberry.field(description="the message this one quotes (a reply to it), when this workspace has it")
    async def quoted(self, info: TenantInfo) -> InboxMessage | None:
        quoted = (self.doc.get("context") or {}).get("id")
        return await _message_by_provider_id(info, self.doc.get("workspace_id"), quoted)

    @strawberry.field(description="the emoji the customer reacted to this message with, if any")
    def customer_reaction(self) -> str | None:
        return self.doc.get("customer_reaction")


@strawberry.type(description="a customer's reaction to a message")
class MessageReaction:
    emoji: str = strawberry.field(description="empty when the customer removed their reaction")
    message_id: strawberry.ID = strawberry.field(description="the id of the message reacted to")
    workspace_id: strawberry.Private[str]

    @strawberry.field(description="the message reacted to, when this workspace has it")
    async def message(self, info: TenantInfo) -> InboxMessage | None:
        return await _message_by_provider_id(info, self.workspace_id, str(self.message_id))


async def _message_by_provider_id(
    info: TenantInfo, workspace_id: str | None, provider_id: object
) -> InboxMessage | None:
    """A message of the same workspace by the id a quote or a reaction names (batched per level)."""
    if not workspace_id or not isinstance(provider_id, str) or not provider_id:
        return None
    found = await loaders(info).messages_by_provider_id.load((workspace_id, provider_id))
    return InboxMessage(doc=found) if found else None


async def _support_tags(info: TenantInfo, workspace_id: str) -> set[str]:
    """Names of SUPPORT tags, cached on the request (or subscription) context for a few seconds."""
    ctx = info.context
    cache = ctx.support_tags
    cached = cache.get(workspace_id)
    timing = ctx.services.timing
    if cached is not None and cached[0] > timing.monotonic():
        return cached[1]
    names = {t["name"] for t in await ctx.services.tags.list(workspace_id) if t["kind"] == "SUPPORT"}
    cache[workspace_id] = (timing.monotonic() + SUPPORT_TAGS_TTL, names)
    return names


@strawberry.type(description="a contact's conversation as the agents' inbox shows it")
class Conversation:
    doc: strawberry.Private[Mapping[str, Any]]  # a stored contact, or a ContactDoc a turn returned

    @strawberry.field(description="the contact id")
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.doc["_id"])

    @strawberry.field(description="null for a customer who shares no phone number (see contact)")
    def phone(self) -> str | None:
        return self.doc.get("phone")

    @strawberry.field
    def name(self) -> str | None:
        return self.doc.get("name")

    @strawberry.field
    def contact(self) -> Contact:
        return Contact(doc=self.doc)

    @strawberry.field
    async def assigned_agent(self, info: TenantInfo) -> Agent | None:
        return await assigned_agent_of(info, self.doc)

    @strawberry.field(description="the contact's SUPPORT tags (marketing tags are not shown here)")
    async def support_tags(self, info: TenantInfo) -> list[str]:
        support = await _support_tags(info, self.doc["workspace_id"])
        return [t for t in self.doc.get("tags", []) if t in support]

    @strawberry.field(description="customer messages since an agent last read or answered")
    def unread_count(self) -> int:
        return int(self.doc.get("unread") or 0)

    @strawberry.field(description="the 24-hour window is open: agents may write free text")
    def window_open(self, info: TenantInfo) -> bool:
        return window_open(self.doc.get("last_inbound_at"), info.context.services.clock.now())

    @strawberry.field
    def last_message_at(self) -> datetime | None:
        return self.doc.get("last_message_at")

    @strawberry.field(description="the latest messages in and out, oldest first")
    async def messages(self, info: TenantInfo, last: int = 50) -> list[InboxMessage]:
        found = await inbox_ops.messages(info.context.services, self.doc, last)
        return [InboxMessage(doc=m) for m in found]


@strawberry.type
class ConversationEdge:
    cursor: str
    node: Conversation


@strawberry.type
class ConversationConnection:
    edges: list[ConversationEdge]
    page_info: PageInfo


def _cursor(doc: dict[str, Any]) -> str:
    return encode_cursor([doc["last_message_at"].isoformat(), doc["_id"]])


def _after(after: str | None) -> tuple[datetime, str] | None:
    values = decode_cursor(after)
    if values is None:
        return None
    try:
        return datetime.fromisoformat(values[0]), str(values[1])
    except (ValueError, IndexError, TypeError):
        raise InvalidInput("after: not a cursor this API returned", field="after") from None


@strawberry.type
class InboxQuery:
    @strawberry.field(
        permission_classes=ANY_ROLE,
        description="conversations, most recent first; assignedTo takes an agent id or e-mail",
    )
    async def conversations(
        self,
        info: TenantInfo,
        assigned_to: strawberry.ID | None = None,
        unassigned: bool = False,
        first: int | None = None,
        after: str | None = None,
    ) -> ConversationConnection:
        ctx = info.context
        limit = page_size(first)
        found = await inbox_ops.conversations(
            ctx.services,
            ctx.workspace(),
            assigned_to and str(assigned_to),
            unassigned,
            _after(after),
            limit + 1,
        )
        edges = [ConversationEdge(cursor=_cursor(d), node=Conversation(doc=d)) for d in found[:limit]]
        return ConversationConnection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=len(found) > limit, end_cursor=edges[-1].cursor if edges else None
            ),
        )

    @strawberry.field(permission_classes=ANY_ROLE)
    async def conversation(
        self, info: TenantInfo, phone: Phone, whatsapp_id: WhatsappId = None
    ) -> Conversation | None:
        ctx = info.context
        if phone is None and whatsapp_id is None:
            return None
        key = await find_contact_key(ctx.services, ctx.workspace(), ContactRef(phone, whatsapp_id))
        found = await ctx.services.contacts.load(key) if key is not None else None
        return Conversation(doc=found) if found else None

    @strawberry.field(permission_classes=ANY_ROLE)
    async def teams(self, info: TenantInfo) -> list[Team]:
        ctx = info.context
        return [Team(doc=t) for t in await ops.list_teams(ctx.services, ctx.workspace())]


async def _own_agent(ctx: Context, workspace_id: str, agent_ref: str) -> str:
    """The id of the agent ``agent_ref`` (id or e-mail) names when it is the AGENT key's own agent:
    an inbox key must not write in a colleague's name (whether that agent exists is not said)."""
    own = ctx.agent_id
    if own is None:
        raise Forbidden("this AGENT key is tied to no agent, so it cannot send as one: leave agentId out")
    if agent_ref == own:
        return own
    named = await ctx.services.agents.find(workspace_id, agent_ref.strip())
    if named is None or named["_id"] != own:
        raise Forbidden("an AGENT key sends only as its own agent: leave agentId out")
    return own


@strawberry.type
class InboxMutation:
    @strawberry.mutation(
        permission_classes=ANY_ROLE,
        description="write to the customer as an agent (WINDOW_CLOSED outside the 24-hour window); "
        "agentId defaults to the key's agent, then to the contact's assigned agent; an AGENT key "
        "may name only its own agent (FORBIDDEN otherwise)",
    )
    async def send_agent_message(
        self,
        info: TenantInfo,
        phone: Phone,
        text: str,
        agent_id: strawberry.ID | None = None,
        whatsapp_id: WhatsappId = None,
    ) -> OutboundMessage:
        ctx = info.context
        workspace_id = ctx.workspace()
        agent = str(agent_id) if agent_id else ctx.agent_id
        if agent_id and ctx.role == AGENT:
            agent = await _own_agent(ctx, workspace_id, str(agent_id))
        who = ContactRef(phone, whatsapp_id)
        message = await inbox_ops.send_agent_message(ctx.services, workspace_id, who, text, agent)
        return OutboundMessage(doc=message)

    @strawberry.mutation(permission_classes=ANY_ROLE)
    async def mark_conversation_read(
        self, info: TenantInfo, phone: Phone, whatsapp_id: WhatsappId = None
    ) -> Conversation:
        ctx = info.context
        who = ContactRef(phone, whatsapp_id)
        return Conversation(doc=await inbox_ops.mark_read(ctx.services, ctx.workspace(), who))

    @strawberry.mutation(
        permission_classes=ANY_ROLE,
        description="hand the conversation to an available agent (id or e-mail); flows stop answering",
    )
    async def assign_contact(
        self, info: TenantInfo, phone: Phone, agent_id: strawberry.ID, whatsapp_id: WhatsappId = None
    ) -> Contact:
        ctx = info.context
        who = ContactRef(phone, whatsapp_id)
        return Contact(
            doc=await ops.assign_contact(ctx.services, ctx.workspace(), who, str(agent_id), caller(info))
        )

    @strawberry.mutation(
        permission_classes=ANY_ROLE,
        description="hand the conversation to an available member of a team, by its policy or strategy",
    )
    async def assign_contact_to_team(
        self,
        info: TenantInfo,
        phone: Phone,
        team: str,
        strategy: TeamPolicy | None = None,
        whatsapp_id: WhatsappId = None,
    ) -> Contact:
        ctx = info.context
        who = ContactRef(phone, whatsapp_id)
        contact = await ops.assign_to_team(
            ctx.services, ctx.workspace(), who, team, strategy.value if strategy else None, caller(info)
        )
        return Contact(doc=contact)

    @strawberry.mutation(permission_classes=ANY_ROLE, description="hand the conversation back to the flows")
    async def release_contact(
        self, info: TenantInfo, phone: Phone, whatsapp_id: WhatsappId = None
    ) -> Contact:
        ctx = info.context
        who = ContactRef(phone, whatsapp_id)
        return Contact(doc=await ops.release_contact(ctx.services, ctx.workspace(), who, caller(info)))

    @strawberry.mutation(permission_classes=ADMIN_ONLY)
    async def create_team(
        self,
        info: TenantInfo,
        name: str,
        agent_ids: list[strawberry.ID] | None = None,
        policy: TeamPolicy = TeamPolicy.ROUND_ROBIN,
    ) -> Team:
        ctx = info.context
        ids = [str(a) for a in agent_ids or []]
        return Team(doc=await ops.create_team(ctx.services, ctx.workspace(), name, ids, policy.value))

    @strawberry.mutation(
        permission_classes=ADMIN_ONLY, description="renaming is refused while a flow uses it"
    )
    async def update_team(
        self,
        info: TenantInfo,
        id: strawberry.ID,
        name: str | None = None,
        agent_ids: list[strawberry.ID] | None = None,
        policy: TeamPolicy | None = None,
    ) -> Team:
        ctx = info.context
        ids = [str(a) for a in agent_ids] if agent_ids is not None else None
        team = await ops.update_team(
            ctx.services, ctx.workspace(), str(id), name, ids, policy.value if policy else None
        )
        return Team(doc=team)

    @strawberry.mutation(permission_classes=ADMIN_ONLY, description="refused (CONFLICT) while a flow uses it")
    async def delete_team(self, info: TenantInfo, id: strawberry.ID) -> bool:
        ctx = info.context
        return await ops.delete_team(ctx.services, ctx.workspace(), str(id))

    @strawberry.mutation(
        permission_classes=ADMIN_ONLY, description="an e-mail change is refused while a flow names the agent"
    )
    async def update_agent(
        self,
        info: TenantInfo,
        id: strawberry.ID,
        name: str | None = None,
        email: str | None = None,
        teams: list[str] | None = None,
    ) -> Agent:
        ctx = info.context
        return Agent.of(await ops.update_agent(ctx.services, ctx.workspace(), str(id), name, email, teams))

    @strawberry.mutation(
        permission_classes=ADMIN_ONLY,
        description="refused (CONFLICT) while a flow names the agent or they own conversations",
    )
    async def delete_agent(self, info: TenantInfo, id: strawberry.ID) -> bool:
        ctx = info.context
        return await ops.delete_agent(ctx.services, ctx.workspace(), str(id))


@strawberry.type
class InboxSubscription:
    @strawberry.subscription(
        permission_classes=ANY_ROLE,
        description="every committed change of a conversation (new messages, assignment, reads, tags)",
    )
    async def inbox_updated(
        self, info: TenantInfo, assigned_to: strawberry.ID | None = None
    ) -> AsyncGenerator[Conversation, None]:
        ctx = info.context
        updates = ctx.services.pubsub.subscribe(inbox_topic(ctx.workspace()))
        try:
            async for document in updates:
                if assigned_to is None or document.get("assigned_agent") == str(assigned_to):
                    yield Conversation(doc=document)
        finally:
            await updates.aclose()
