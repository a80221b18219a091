"""Identity changes applied inside a contact's actor turn: what the customer is known by, and merges.

The directory (``server.contact_directory``) decides *which* contact an identity belongs to and
claims it there; these functions keep the contact document in step, in the same CAS turn as
everything else the contact does. The merge rule (docs/identity.md) lives here: one place says
what a contact that absorbs another keeps. Synchronous and free of I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from server.actors.events import AbsorbContact, Event, MergeInto, TurnResult, UpdateIdentities
from server.documents import ContactDoc
from server.errors import InvalidInput
from server.identity import Identities
from server.machines.contact_state import set_consent
from server.machines.turn import ACTIVE, Turn, end_run

MERGED_REASON = "MERGED_INTO"
MERGED_FROM_KEPT = 50


def apply_identity_command(turn: Turn, event: Event) -> TurnResult:
    contact = turn.contact
    if isinstance(event, UpdateIdentities):
        changed = note_identities(
            contact, Identities(event.phone, event.bsuid, event.parent_bsuid, event.username)
        )
        return TurnResult(contact, changed=changed)
    if isinstance(event, MergeInto):
        return _merge_into(turn, event)
    if isinstance(event, AbsorbContact):
        absorb(contact, event.absorbed, turn.now)
        return TurnResult(contact)
    raise InvalidInput(f"unknown identity command {type(event).__name__}")


def note_identities(contact: ContactDoc, identities: Identities) -> bool:
    """The latest phone, BSUID, parent BSUID and username win; absent ones leave what is known."""
    changed = False
    given = identities.fields()
    for name in ("phone", "bsuid", "parent_bsuid", "username"):  # literal keys: typed
        value = given.get(name)
        if value and contact.get(name) != value:
            contact[name] = value
            changed = True
    return changed


def _merge_into(turn: Turn, event: MergeInto) -> TurnResult:
    """End what this contact was doing and point it at the survivor (once: a retry changes nothing)."""
    contact = turn.contact
    if contact.get("merged_into"):
        return TurnResult(contact, changed=False)
    for run in contact.get("runs", []):
        if run["status"] in ACTIVE:
            end_run(turn, run, "cancelled", f"{MERGED_REASON}:{event.into}")
    contact["timers"] = []
    contact["merged_into"] = event.into
    contact["merged_at"] = turn.now
    return TurnResult(contact)


def absorb(contact: ContactDoc, absorbed: Mapping[str, Any], now: datetime) -> None:
    """The merge rule: the survivor (the older contact) keeps its own data and takes the rest.

    - tags: the union; variables: the survivor's values win, the absorbed contact fills the gaps;
    - identities, name: the survivor's win, the absorbed contact's fill the gaps (every identity
      of both keeps naming the survivor in the directory);
    - consent: the most restrictive wins: a withdrawal on either side leaves the survivor opted
      out; consent given on either side (and withdrawn on neither) stands;
    - the window and the inbox: the latest inbound/message times, unread counts added up;
    - an agent owning the absorbed conversation keeps it unless the survivor has one.
    Runs are not moved: the absorbed contact's ended with ``MERGED_INTO`` when it was merged.
    """
    tags = list(contact.get("tags") or [])
    contact["tags"] = tags + [t for t in absorbed.get("tags") or [] if t not in tags]
    variables = contact.setdefault("variables", {})
    for name, value in (absorbed.get("variables") or {}).items():
        if variables.get(name) is None:
            variables[name] = value
    for identity in ("phone", "bsuid", "parent_bsuid", "username", "name"):  # literal keys: typed
        if not contact.get(identity) and absorbed.get(identity):
            contact[identity] = absorbed[identity]
    _merge_consent(contact, absorbed, now)
    for moment in ("last_inbound_at", "last_message_at"):
        times = [t for t in (contact.get(moment), absorbed.get(moment)) if isinstance(t, datetime)]
        contact[moment] = max(times) if times else None
    contact["unread"] = int(contact.get("unread") or 0) + int(absorbed.get("unread") or 0)
    if not contact.get("assigned_agent") and absorbed.get("assigned_agent"):
        contact["assigned_agent"] = absorbed["assigned_agent"]
        contact["assignment"] = absorbed.get("assignment")
    merged = contact.setdefault("merged_from", [])
    merged.append({"contact_id": absorbed["_id"], "at": now})
    del merged[:-MERGED_FROM_KEPT]


def _withdrew(contact: Mapping[str, Any]) -> bool:
    return not contact.get("opted_in") and bool(contact.get("opt_out"))


def _merge_consent(contact: ContactDoc, absorbed: Mapping[str, Any], now: datetime) -> None:
    where = {"merged_from": absorbed["_id"]}
    if _withdrew(absorbed) or _withdrew(contact):
        set_consent(contact, False, now, "merge", **where)
    elif absorbed.get("opted_in") and not contact.get("opted_in"):
        set_consent(contact, True, now, "merge", given=absorbed.get("opt_in"), **where)
