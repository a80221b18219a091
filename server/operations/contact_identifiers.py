"""Contacts named by API arguments and import rows: a phone number, or a WhatsApp id (phone or BSUID).

Phone numbers are parsed by ``server/phones.py`` in the workspace's ``default_country`` (a
national number like ``600 111 222`` then means the same contact as ``+34600111222``); BSUIDs
are checked by ``server/identity.py``. Which contact they name is the directory's answer
(``server/contact_directory.py``): the one home of "find a contact by any identifier".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from server.contact_directory import ContactDirectory
from server.errors import InvalidInput
from server.identity import BSUID, PARENT_BSUID, Identities, bsuid_kind, display_username, parse_bsuid
from server.ids import ContactKey
from server.phones import parse_phone
from server.workspace_caches import WorkspaceCaches

WHATSAPP_ID = "whatsappId"


class PhoneServices(Protocol):
    """Reading a phone argument: the workspace's default country (caches)."""

    @property
    def caches(self) -> WorkspaceCaches: ...


class IdentifierServices(PhoneServices, Protocol):
    """Finding the contact an API argument names (the contact directory)."""

    @property
    def directory(self) -> ContactDirectory: ...


@dataclass(frozen=True)
class ContactRef:
    """A contact as an API call names it: by ``phone``, or by ``whatsapp_id`` (a phone or a BSUID)."""

    phone: str | None = None
    whatsapp_id: str | None = None

    def __str__(self) -> str:
        return str(self.phone if self.phone is not None else self.whatsapp_id)


Who = ContactRef | str
"""A ``ContactRef``, or a phone number as given."""


async def contact_phone(services: PhoneServices, workspace_id: str, raw: object, field: str = "phone") -> str:
    """``raw`` as E.164, or ``InvalidInput`` naming ``field``."""
    return parse_phone(raw, field=field, region=await services.caches.default_country_of(workspace_id))


async def identities_of(
    services: IdentifierServices, workspace_id: str, who: Who, field: str = "phone"
) -> Identities:
    """The identity an argument names; ``InvalidInput`` naming the argument when it names none."""
    if not isinstance(who, ContactRef):  # a phone as given (parse_phone names what is wrong)
        return Identities(phone=await contact_phone(services, workspace_id, who, field))
    if (who.phone is None) == (who.whatsapp_id is None):
        raise InvalidInput(
            f"name the contact by {field} or by {WHATSAPP_ID} (a phone number or a BSUID), one of the two",
            field=field,
        )
    if who.phone is not None:
        return Identities(phone=await contact_phone(services, workspace_id, who.phone, field))
    raw = who.whatsapp_id.strip() if isinstance(who.whatsapp_id, str) else who.whatsapp_id
    kind = bsuid_kind(raw) if isinstance(raw, str) else None
    if kind == BSUID:
        return Identities(bsuid=raw)
    if kind == PARENT_BSUID:
        return Identities(parent_bsuid=raw)
    return Identities(phone=await contact_phone(services, workspace_id, raw, WHATSAPP_ID))


async def contact_key(
    services: IdentifierServices, workspace_id: str, who: Who, field: str = "phone"
) -> ContactKey:
    """The contact (actor) an argument names in this workspace; created on its first turn if new."""
    resolved = await services.directory.resolve(
        workspace_id, await identities_of(services, workspace_id, who, field)
    )
    assert resolved is not None  # resolve creates
    return resolved.key


async def find_contact_key(
    services: IdentifierServices, workspace_id: str, who: Who, field: str = "phone"
) -> ContactKey | None:
    """The contact an argument names, or None when nobody is known by it (nothing is created)."""
    return await services.directory.find(
        workspace_id, await identities_of(services, workspace_id, who, field)
    )


async def sandbox_customer(
    services: IdentifierServices,
    workspace_id: str,
    phone: str | None,
    bsuid: str | None,
    username: str | None,
) -> Identities:
    """The sandbox's customer as WhatsApp would report them: a phone and/or a BSUID, and a username."""
    if phone is None and bsuid is None:
        raise InvalidInput("the sandbox customer needs a phone or a bsuid (or both)", field="phone")
    return Identities(
        phone=await contact_phone(services, workspace_id, phone) if phone is not None else None,
        bsuid=parse_bsuid(bsuid) if bsuid is not None else None,
        username=display_username(username),
    )
