"""GraphQL surface of a contact's data: tags, typed variables, consent, import, Klaviyo settings.

Mixins the root ``Query``/``Mutation`` inherit (like ``catalog.py``). Inbox keys (AGENT) may tag
contacts, set variables and record consent; importing and settings are ADMIN only.
"""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.scalars import JSON

from server.errors import InvalidInput
from server.graphql.arguments import Phone, WhatsappId
from server.graphql.context import TenantInfo
from server.graphql.json_values import plain
from server.graphql.pagination import PageInfo, decode_cursor, encode_cursor, page_size
from server.graphql.permissions import ADMIN_ONLY, ANY_ROLE
from server.graphql.types import Contact
from server.operations import consent as consent_ops
from server.operations import contact_data as ops
from server.operations import contact_erasure, contact_list
from server.operations import klaviyo_settings as klaviyo_ops
from server.operations.contact_identifiers import ContactRef


def caller(info: TenantInfo) -> str | None:
    """Who is acting, for the record: the key's agent, else the API key id."""
    ctx = info.context
    if ctx.agent_id:
        return f"agent:{ctx.agent_id}"
    return f"key:{ctx.key_id}" if ctx.key_id else None


@strawberry.type(description="the workspace's Klaviyo connection (the private key is never shown)")
class KlaviyoSettings:
    configured: bool
    base_url: str
    key_hint: str | None

    @classmethod
    def of(cls, view: dict[str, Any]) -> KlaviyoSettings:
        return cls(configured=view["configured"], base_url=view["base_url"], key_hint=view["key_hint"])


@strawberry.type
class ContactEdge:
    cursor: str
    node: Contact


@strawberry.type(description="a page of contacts; totalCount counts every contact matching, not the page")
class ContactConnection:
    edges: list[ContactEdge]
    page_info: PageInfo
    _count: strawberry.Private[Any]

    @strawberry.field(description="the contacts of this page (the edges' nodes)")
    def nodes(self) -> list[Contact]:
        return [edge.node for edge in self.edges]

    @strawberry.field(description="how many contacts match the segment and search (all pages)")
    async def total_count(self) -> int:
        return int(await self._count())


def _after_id(after: str | None, workspace_id: str) -> str | None:
    """The contact id an ``after`` cursor names; only this workspace's cursors are accepted."""
    values = decode_cursor(after)
    if values is None:
        return None
    if len(values) != 1 or not isinstance(values[0], str) or not values[0].startswith(f"{workspace_id}:"):
        raise InvalidInput("after: not a cursor this API returned", field="after")
    return values[0]


@strawberry.type
class ContactsQuery:
    @strawberry.field(
        permission_classes=ANY_ROLE,
        description="the workspace's contacts in a segment and/or matching a search (a case-insensitive "
        "prefix of the name, username, BSUID or phone), oldest first, paginated (first: 1-200)",
    )
    async def contacts(
        self,
        info: TenantInfo,
        segment: JSON | None = None,
        search: str | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> ContactConnection:
        ctx = info.context
        workspace_id = ctx.workspace()
        limit = page_size(first, contact_list.MAX_CONTACTS_PAGE)
        after_id = _after_id(after, workspace_id)
        match = await contact_list.contact_filter(ctx.services, workspace_id, segment, search)
        found = await ctx.services.contacts.page(workspace_id, match, after_id, limit + 1)
        edges = [ContactEdge(cursor=encode_cursor([c["_id"]]), node=Contact(doc=c)) for c in found[:limit]]
        return ContactConnection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=len(found) > limit, end_cursor=edges[-1].cursor if edges else None
            ),
            _count=lambda: ctx.services.contacts.count(workspace_id, match),
        )

    @strawberry.field(
        permission_classes=ANY_ROLE,
        description="the workspace's own opt-out words; STOP and BAJA always apply as well",
    )
    async def opt_out_keywords(self, info: TenantInfo) -> list[str]:
        ctx = info.context
        return await consent_ops.opt_out_keywords(ctx.services, ctx.workspace())

    @strawberry.field(
        permission_classes=ADMIN_ONLY,
        description="everything held about one contact (a data-subject access request): its document "
        "(fields, tags, consent history, runs with steps, pending timers, outbox, external sync state), "
        "identities, messages, archived runs, broadcast deliveries, status reports, webhook requests",
    )
    async def export_contact(self, info: TenantInfo, id: strawberry.ID) -> JSON:
        ctx = info.context
        return plain(await contact_erasure.export_contact(ctx.services, ctx.workspace(), str(id)))

    @strawberry.field(permission_classes=ADMIN_ONLY)
    async def klaviyo_settings(self, info: TenantInfo) -> KlaviyoSettings:
        ctx = info.context
        return KlaviyoSettings.of(await klaviyo_ops.get_klaviyo(ctx.services, ctx.workspace()))


@strawberry.type
class ContactsMutation:
    @strawberry.mutation(permission_classes=ANY_ROLE, description="add a tag of the catalog to the contact")
    async def tag_contact(
        self, info: TenantInfo, phone: Phone, tag: str, whatsapp_id: WhatsappId = None
    ) -> Contact:
        ctx = info.context
        who = ContactRef(phone, whatsapp_id)
        return Contact(doc=await ops.tag_contact(ctx.services, ctx.workspace(), who, tag, add=True))

    @strawberry.mutation(permission_classes=ANY_ROLE)
    async def untag_contact(
        self, info: TenantInfo, phone: Phone, tag: str, whatsapp_id: WhatsappId = None
    ) -> Contact:
        ctx = info.context
        who = ContactRef(phone, whatsapp_id)
        return Contact(doc=await ops.tag_contact(ctx.services, ctx.workspace(), who, tag, add=False))

    @strawberry.mutation(
        permission_classes=ANY_ROLE,
        description="set a typed variable (INVALID_INPUT names the field and its type when the value "
        "does not fit; null clears it); a field linked to Klaviyo updates the profile too",
    )
    async def set_variable(
        self,
        info: TenantInfo,
        phone: Phone,
        field: str,
        value: JSON | None = None,
        whatsapp_id: WhatsappId = None,
    ) -> Contact:
        ctx = info.context
        who = ContactRef(phone, whatsapp_id)
        return Contact(doc=await ops.set_variable(ctx.services, ctx.workspace(), who, field, value))

    @strawberry.mutation(
        permission_classes=ANY_ROLE,
        description="record marketing consent given or withdrawn (kept with when and by whom)",
    )
    async def set_opt_in(
        self, info: TenantInfo, phone: Phone, opted_in: bool, whatsapp_id: WhatsappId = None
    ) -> Contact:
        ctx = info.context
        contact = await consent_ops.set_opt_in(
            ctx.services,
            ctx.workspace(),
            ContactRef(phone, whatsapp_id),
            opted_in,
            by=caller(info),
            key_id=ctx.key_id,
        )
        return Contact(doc=contact)

    @strawberry.mutation(
        permission_classes=ADMIN_ONLY,
        description="create or update contacts from rows {phone, variables, tags, optedIn} (at most 1,000; "
        "a row with only a phone creates the contact); every row is validated before any is applied, and "
        "the error lists every refused row in extensions.rows (index from 0, field, code, message); "
        "importing the same rows again changes nothing. Larger files: startContactImport",
    )
    async def import_contacts(self, info: TenantInfo, rows: JSON) -> list[Contact]:
        ctx = info.context
        outcome = await ops.import_contacts(ctx.services, ctx.workspace(), rows)
        return [Contact(doc=c) for c in outcome.contacts]

    @strawberry.mutation(
        permission_classes=ADMIN_ONLY,
        description="erase a contact (data-subject erasure): its document, identities, messages, runs, "
        "timers, outbox and external sync state; an anonymous tombstone records who erased it and when",
    )
    async def erase_contact(self, info: TenantInfo, id: strawberry.ID) -> bool:
        ctx = info.context
        await contact_erasure.erase_contact(ctx.services, ctx.workspace(), str(id), caller(info))
        return True

    @strawberry.mutation(
        permission_classes=ADMIN_ONLY,
        description="the workspace's own opt-out words (whole message, any case or accents)",
    )
    async def set_opt_out_keywords(self, info: TenantInfo, words: list[str]) -> list[str]:
        ctx = info.context
        return await consent_ops.set_opt_out_keywords(ctx.services, ctx.workspace(), words)

    @strawberry.mutation(
        permission_classes=ADMIN_ONLY,
        description="connect Klaviyo (a private key with profiles:write); null privateKey disconnects",
    )
    async def set_klaviyo_settings(
        self, info: TenantInfo, private_key: str | None, base_url: str | None = None
    ) -> KlaviyoSettings:
        ctx = info.context
        view = await klaviyo_ops.set_klaviyo(ctx.services, ctx.workspace(), private_key, base_url)
        return KlaviyoSettings.of(view)
