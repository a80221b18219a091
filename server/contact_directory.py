"""Find a contact by any identifier: the one home of "which contact is this customer?".

Everything that names a customer by a phone number or a BSUID (webhooks, the API, the sandbox,
webhook triggers, imports) turns it into a ``ContactKey`` here before telling the contact's actor.

- ``find`` only looks: the contact one of the identities names, or None.
- ``resolve`` finds or creates: identities nobody holds are claimed for the contact the others
  name, or for a new contact (``new_contact_key``); the actor creates the document on its first
  turn. Two replicas resolving the first message of one person at once claim the same identity
  document, and the store lets only one insert win: the other reads the winner (never two
  contacts for one person).
- When the identities name two contacts (a phone known as contact A arriving with a BSUID known
  as contact B) they are merged (``server.contact_merge``, rule in docs/identity.md) and the
  survivor is returned.
- ``move`` follows a changed identity (``user_id_update``, ``user_changed_number``).

Contacts stored before identities (``_id`` ``ws:+phone``) are found by their phone even before
the start-up migration has indexed them (``_legacy``), so a replica of an older version writing
during a rolling deploy cannot split a person in two either.

Known identities are cached per process (most messages come from known customers): a cached
answer can only be stale after a merge or a move; a merged contact's actor redirects what still
reaches it (``ContactActor``), and a moved identity still names the same person.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from server.clock import Clock, SystemTiming, Timing
from server.errors import InvalidInput
from server.identity import KINDS, PHONE, Identities
from server.ids import ContactKey, new_contact_key
from server.store.contacts import ContactRepository
from server.store.identities import IdentityRepository

CACHE_SECONDS = 600.0
CACHE_ENTRIES = 200_000

Merge = Callable[[str, list[str]], Awaitable[str]]
"""(workspace id, contact ids naming one person) -> the contact id that remains."""


@dataclass(frozen=True)
class Resolved:
    key: ContactKey
    claimed: tuple[str, ...] = ()  # identity kinds newly given to the contact by this call
    merged: tuple[str, ...] = ()  # contact ids merged into ``key`` by this call


class ContactDirectory:
    def __init__(
        self,
        identities: IdentityRepository,
        contacts: ContactRepository,
        clock: Clock,
        timing: Timing | None = None,
    ) -> None:
        self._identities = identities
        self._contacts = contacts
        self._clock = clock
        self._timing = timing or SystemTiming()  # how long an owner found stays cached
        self._cache: dict[tuple[str, str, str], tuple[float, str]] = {}
        self.merge: Merge | None = None  # wired by the runtime once actors run

    async def find(self, workspace_id: str, identities: Identities) -> ContactKey | None:
        """The contact one of ``identities`` names (in ``KINDS`` order), without claiming anything."""
        for kind, value in identities.pairs():
            owner = await self._owner(workspace_id, kind, value)
            if owner is None and kind == PHONE:
                owner = await self._legacy(workspace_id, value)
            if owner is not None:
                return ContactKey.from_doc_id(owner)
        return None

    async def resolve(
        self, workspace_id: str, identities: Identities, create: bool = True
    ) -> Resolved | None:
        """The one contact these identities name, claiming the ones nobody holds for it.

        ``create`` False only links: when no identity is known, nothing is claimed and the answer
        is None (a status report about a number nobody wrote from creates no contact).
        """
        pairs = identities.pairs()
        if not pairs:
            raise InvalidInput("a phone number or a BSUID is needed to find a contact")
        owners: dict[tuple[str, str], str | None] = {}
        unclaimed: list[tuple[str, str]] = []  # no identity document yet (a legacy owner has none)
        for kind, value in pairs:
            owner = await self._owner(workspace_id, kind, value)
            if owner is None:
                unclaimed.append((kind, value))
                if kind == PHONE:
                    owner = await self._legacy(workspace_id, value)
            owners[(kind, value)] = owner
        known = sorted({owner for owner in owners.values() if owner is not None})
        if not known and not create:
            return None
        candidate = known[0] if known else new_contact_key(workspace_id).doc_id
        fresh = not known  # ``candidate`` holds nothing yet
        claimed: list[str] = []
        for kind, value in unclaimed:
            wanted = owners[(kind, value)] or candidate
            holder = await self._identities.claim(workspace_id, kind, value, wanted, self._clock.now())
            owners[(kind, value)] = holder
            self._remember(workspace_id, kind, value, holder)
            if holder == wanted:
                claimed.append(kind)
                fresh = fresh and wanted != candidate
            elif fresh and wanted == candidate:
                candidate = holder  # another replica created this person a moment ago: join it
                fresh = False
        distinct = sorted({owner for owner in owners.values() if owner is not None})
        if len(distinct) == 1:
            return Resolved(ContactKey.from_doc_id(distinct[0]), tuple(claimed))
        if self.merge is None:
            raise RuntimeError("contacts to merge but no merger is wired (runtime not started)")
        survivor = await self.merge(workspace_id, distinct)
        for kind, value in pairs:
            self._remember(workspace_id, kind, value, survivor)
        merged = tuple(c for c in distinct if c != survivor)
        return Resolved(ContactKey.from_doc_id(survivor), tuple(claimed), merged)

    async def move(self, workspace_id: str, kind: str, old: str, new: str) -> Resolved | None:
        """Identity ``old`` became ``new`` for its contact: claim ``new``, release ``old``.

        When no contact holds ``old``, the contact holding ``new`` (a retry) or None (nothing to
        follow: ``new`` is claimed when the user next writes). If ``new`` already names another
        contact, the two are merged.
        """
        owner = await self._owner(workspace_id, kind, old)
        if owner is None and kind == PHONE:
            owner = await self._legacy(workspace_id, old)
        if owner is None:  # moved already (Meta retried the webhook), or never known
            return await self.resolve(workspace_id, _one(kind, new), create=False)
        resolved = await self.resolve(workspace_id, _one(kind, new), create=False)
        if resolved is None:
            holder = await self._identities.claim(workspace_id, kind, new, owner, self._clock.now())
            resolved = Resolved(ContactKey.from_doc_id(holder), (kind,) if holder == owner else ())
        if resolved.key.doc_id != owner:
            if self.merge is None:
                raise RuntimeError("contacts to merge but no merger is wired (runtime not started)")
            pair = sorted({owner, resolved.key.doc_id})
            survivor = await self.merge(workspace_id, pair)
            merged = tuple(c for c in pair if c != survivor)
            resolved = Resolved(ContactKey.from_doc_id(survivor), resolved.claimed, merged)
        if old != new:
            for holder in {owner, resolved.key.doc_id}:  # after a merge the survivor holds it
                await self._identities.release(workspace_id, kind, old, holder)
            self._cache.pop((workspace_id, kind, old), None)
        self._remember(workspace_id, kind, new, resolved.key.doc_id)
        return resolved

    async def identities_of(self, key: ContactKey) -> Identities:
        """What a contact is known by in the index (the latest claim of each kind): what a contact's
        first document starts with, whichever call named it first."""
        claims = await self._identities.of_contact(key.workspace_id, key.doc_id)
        claims.sort(key=lambda claim: (claim.get("at") is not None, claim.get("at") or 0))
        latest = {claim["kind"]: claim["value"] for claim in claims if claim["kind"] in KINDS}
        return Identities(**latest)

    def forget_contact(self, contact_id: str) -> None:
        """Drop cached identities naming ``contact_id`` (it was merged away)."""
        for entry, (_, owner) in list(self._cache.items()):
            if owner == contact_id:
                self._cache.pop(entry, None)

    # --- lookups ----------------------------------------------------------------------------------

    async def _owner(self, workspace_id: str, kind: str, value: str) -> str | None:
        cached = self._cache.get((workspace_id, kind, value))
        if cached is not None and cached[0] > self._timing.monotonic():
            return cached[1]
        owner = await self._identities.owner(workspace_id, kind, value)
        if owner is not None:
            self._remember(workspace_id, kind, value, owner)
        return owner

    async def _legacy(self, workspace_id: str, phone: str) -> str | None:
        """A contact stored before identities under ``ws:phone`` that still has that phone."""
        doc_id = ContactKey(workspace_id, phone).doc_id
        found = await self._contacts.get(workspace_id, doc_id)
        if found is not None and found.get(PHONE) == phone and not found.get("merged_into"):
            return doc_id
        return None

    def _remember(self, workspace_id: str, kind: str, value: str, owner: str | None) -> None:
        if owner is None:
            return
        if len(self._cache) >= CACHE_ENTRIES:
            self._cache.clear()  # rarely reached; cheaper than an LRU on every message
        self._cache[(workspace_id, kind, value)] = (self._timing.monotonic() + CACHE_SECONDS, owner)


def _one(kind: str, value: str) -> Identities:
    return Identities(**{kind: value})
