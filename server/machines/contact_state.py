"""Pure changes to a contact document shared by flow nodes and API commands.

Consent, assignment, external-field sync entries and inbox bookkeeping must look the same
whether a flow node, an API call or a customer's keyword made them, so both the runner and the
actor's commands write them through these functions. No I/O here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from server.documents import ContactDoc
from server.ids import new_id
from server.machines.values import fold

# Whole-message opt-out words every workspace honours; workspaces may add their own.
DEFAULT_OPT_OUT_WORDS = ("STOP", "BAJA")
CONSENT_LOG_KEPT = 50
# Punctuation people put around a one-word message ("¡Baja!", "stop.").
_EDGE = " \t\r\n.,;:!¡?¿\"'()"


def opt_out_keys(extra: list[str] | tuple[str, ...] | frozenset[str] = ()) -> frozenset[str]:
    """Folded (case- and accent-free) opt-out words: the defaults plus a workspace's own."""
    return frozenset(fold(w).strip(_EDGE) for w in (*DEFAULT_OPT_OUT_WORDS, *extra) if fold(w).strip(_EDGE))


def opt_out_word(text: str | None, keys: frozenset[str]) -> str | None:
    """The keyword when the *whole* message is one ("Baja", " STOP! "), else None."""
    if not text:
        return None
    word = fold(text).strip(_EDGE)
    return word if word and word in keys else None


def set_consent(contact: ContactDoc, opted_in: bool, now: datetime, source: str, **where: Any) -> bool:
    """Record consent given or withdrawn with who/when/where; False when nothing changed.

    ``source`` is ``flow``, ``api`` or ``keyword``; ``where`` carries the details (flow, node and
    run; the API caller; the keyword and message id). Every change is kept in ``consent_log``.
    """
    if bool(contact.get("opted_in")) == opted_in and contact.get("opt_in" if opted_in else "opt_out"):
        return False
    record = {"at": now, "source": source, **{k: v for k, v in where.items() if v is not None}}
    contact["opted_in"] = opted_in
    if opted_in:
        contact["opt_in"] = record
    else:
        contact["opt_out"] = record
    log = contact.setdefault("consent_log", [])
    log.append({"opted_in": opted_in, **record})
    del log[:-CONSENT_LOG_KEPT]
    return True


def set_assignment(contact: ContactDoc, agent: dict[str, Any], now: datetime, **how: Any) -> None:
    """Hand the conversation to ``agent`` (a stored agent document); ``how`` says by what means.

    A contact that never exchanged a message enters the inbox now, so its agent can see it.
    """
    if contact.get("last_message_at") is None:
        contact["last_message_at"] = now
    contact["assigned_agent"] = agent["_id"]
    contact["assignment"] = {
        "agent_id": agent["_id"],
        "agent_email": agent.get("email"),
        "agent_name": agent.get("name"),
        "at": now,
        **{k: v for k, v in how.items() if v is not None},
    }


def clear_assignment(contact: ContactDoc, now: datetime, **how: Any) -> bool:
    """Give the conversation back to the flows; False when nobody owned it."""
    if not contact.get("assigned_agent"):
        return False
    previous = contact.get("assignment") or {"agent_id": contact["assigned_agent"]}
    contact["assigned_agent"] = None
    contact["assignment"] = None
    contact["last_release"] = {
        "agent_id": previous.get("agent_id"),
        "at": now,
        **{k: v for k, v in how.items() if v is not None},
    }
    return True


def queue_external_sync(
    contact: ContactDoc,
    link: dict[str, Any],
    field: str,
    value: Any,
    now: datetime,
    run_id: str | None = None,
    node: str | None = None,
) -> dict[str, Any]:
    """Queue an external profile update for after the commit (a durable outbox in the document).

    A newer value for the same property replaces a pending older one, so a retry can never
    write a stale value over a fresh one.
    """
    provider = link.get("provider") or link.get("system") or "klaviyo"
    entry = {
        "id": new_id("xs"),
        "provider": provider,
        "property": link["property"],
        "field": field,
        "value": value,
        "run_id": run_id,
        "node": node,
        "attempts": 0,
        "next_attempt_at": now,
        "last_error": None,
        "created_at": now,
    }
    pending = [
        e
        for e in contact.get("external_sync", [])
        if not (e["provider"] == provider and e["property"] == link["property"])
    ]
    contact["external_sync"] = [*pending, entry]
    return entry


def note_inbound(contact: ContactDoc, at: datetime) -> None:
    """A customer message: the inbox shows one more unread and moves the conversation up."""
    contact["unread"] = int(contact.get("unread") or 0) + 1
    contact["last_message_at"] = at


def note_outbound(before: ContactDoc | None, contact: ContactDoc, now: datetime) -> None:
    """Move the conversation up when this turn queued messages to the customer."""
    sent_before = {m["id"] for m in (before.get("outbox", []) if before is not None else [])}
    if any(m["id"] not in sent_before for m in contact.get("outbox", [])):
        contact["last_message_at"] = now
