"""Who a WhatsApp webhook is about: phone, BSUID, parent BSUID and username; and identity changes.

Since 2026 (tests/conformance/whatsapp-bsuid.md, from Meta's "business-scoped user IDs" page and
webhook references):

- an incoming message's ``contacts[]`` entry always has ``user_id`` (the BSUID); ``wa_id`` and
  the message's ``from`` (the phone) only while Meta shares the number; ``profile.username``
  when the user has one; ``parent_user_id`` when parent BSUIDs are enabled. The message itself
  names its sender by ``from`` and, without a phone, by ``from_user_id`` (``from_parent_user_id``);
- status reports name the recipient by ``recipient_id`` (the phone it was sent to) and
  ``recipient_user_id`` (``recipient_parent_user_id``), and in ``contacts[]`` for sent,
  delivered and read (failed ones have no ``contacts``);
- system messages (no ``contacts`` array) report ``user_changed_number`` (the new number in
  ``system.wa_id``) and ``user_changed_user_id`` (the new BSUID in ``system.user_id``);
- the ``user_id_update`` webhook field reports a BSUID that changed (a new one is issued when a
  user changes number): ``user_id_update[]`` entries with ``user_id: {previous, current}``
  (and ``parent_user_id`` alike), ``wa_id`` when the number is shared.

Values that are not in Meta's format are dropped here (a phone is parsed later, with the rest of
its checks, by ``server.phones``). Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from server.identity import BSUID, PARENT_BSUID, PHONE, display_username, provider_bsuid

Json = dict[str, Any]
IDENTITY_SYSTEM_TYPES = {"user_changed_number": PHONE, "user_changed_user_id": BSUID}


@dataclass(frozen=True)
class Person:
    """A customer as one webhook names them (any part may be missing)."""

    wa_id: str | None = None  # the phone, digits as Meta writes them
    user_id: str | None = None  # BSUID
    parent_user_id: str | None = None
    username: str | None = None
    name: str | None = None

    def filled_from(self, other: Person) -> Person:
        """This person, with what ``other`` (the same person, elsewhere in the webhook) adds."""
        return Person(
            self.wa_id or other.wa_id,
            self.user_id or other.user_id,
            self.parent_user_id or other.parent_user_id,
            self.username or other.username,
            self.name or other.name,
        )

    def __bool__(self) -> bool:
        return bool(self.wa_id or self.user_id or self.parent_user_id)


@dataclass(frozen=True)
class IdentityChange:
    """A customer's ``kind`` (phone or BSUID) changed from ``old`` to ``new``.

    ``person`` is what else the webhook says about them (to find the contact when ``old`` was
    never seen); ``event_id`` makes applying it twice a no-op (a wamid, or the change itself).
    """

    kind: str
    old: str | None
    new: str
    event_id: str
    at: datetime | None
    person: Person = field(default_factory=Person)
    phone_number_id: str | None = None


def people(value: Json) -> list[Person]:
    """The ``contacts[]`` of a ``messages`` change value (entries that are not objects are skipped)."""
    found = []
    for entry in value.get("contacts") or []:
        if not isinstance(entry, dict):
            continue
        profile = entry.get("profile")
        if not isinstance(profile, dict):
            profile = {}
        name = profile.get("name")
        found.append(
            Person(
                wa_id=_text(entry.get("wa_id")),
                user_id=provider_bsuid(entry.get("user_id")),
                parent_user_id=provider_bsuid(entry.get("parent_user_id")),
                username=display_username(profile.get("username")),
                name=name.strip() if isinstance(name, str) and name.strip() else None,
            )
        )
    return found


def sender(message: Json, known: list[Person]) -> Person:
    """Who sent ``message``: its own ``from``/``from_user_id``, completed by the ``contacts[]``
    entry that is them (the one with the same phone or BSUID, else the only one: a user's
    ``wa_id`` and number may differ, Meta says; one contact is the sender anyway). A message
    naming no sender itself has none (the caller refuses it)."""
    own = Person(
        wa_id=_text(message.get("from")),
        user_id=provider_bsuid(message.get("from_user_id")),
        parent_user_id=provider_bsuid(message.get("from_parent_user_id")),
    )
    return own.filled_from(_match(own, known)) if own else own


def recipient(status: Json, known: list[Person]) -> Person:
    """Who a status report is about: ``recipient_id`` (a phone, or a BSUID), ``recipient_user_id``."""
    raw = _text(status.get("recipient_id"))
    bsuid = provider_bsuid(raw)
    own = Person(
        wa_id=None if bsuid else raw,
        user_id=provider_bsuid(status.get("recipient_user_id")) or bsuid,
        parent_user_id=provider_bsuid(status.get("recipient_parent_user_id")),
    )
    return own.filled_from(_match(own, known))


def system_change(message: Json, person: Person, at: datetime) -> IdentityChange | None:
    """A ``system`` message saying the user's number or BSUID changed, else None."""
    system = message.get("system")
    if message.get("type") != "system" or not isinstance(system, dict):
        return None
    kind = IDENTITY_SYSTEM_TYPES.get(str(system.get("type")))
    if kind == PHONE:
        new, old = _text(system.get("wa_id")), person.wa_id
    elif kind == BSUID:
        new, old = provider_bsuid(system.get("user_id")), person.user_id
    else:
        return None
    if not new:
        return None
    return IdentityChange(kind, old, new, str(message.get("id") or f"{kind}:{old}:{new}"), at, person)


def user_id_updates(value: Json, phone_number_id: str | None) -> list[IdentityChange]:
    """The ``user_id_update`` field's entries: BSUIDs (and parent BSUIDs) that changed."""
    changes = []
    for entry in value.get("user_id_update") or []:
        if not isinstance(entry, dict):
            continue
        at = _when(entry.get("timestamp"))
        person = Person(wa_id=_text(entry.get("wa_id")))
        for name, kind in (("user_id", BSUID), ("parent_user_id", PARENT_BSUID)):
            moved = entry.get(name)
            if not isinstance(moved, dict):
                continue
            old, new = provider_bsuid(moved.get("previous")), provider_bsuid(moved.get("current"))
            if new and old != new:
                event_id = f"user_id_update:{kind}:{old}:{new}"
                changes.append(IdentityChange(kind, old, new, event_id, at, person, phone_number_id))
    return changes


def _match(own: Person, known: list[Person]) -> Person:
    for person in known:
        if (own.wa_id and person.wa_id == own.wa_id) or (own.user_id and person.user_id == own.user_id):
            return person
    return known[0] if len(known) == 1 else Person()


def _text(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) and value else None


def _when(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None
