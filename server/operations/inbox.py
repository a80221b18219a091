"""The agents' inbox: conversations newest first, their messages, agent replies and read marks.

A conversation is a contact that has exchanged messages (or was handed to an agent). Agent
replies go through the contact's actor and outbox like flow messages, so they share the
channel, its ordering and its retries, and are refused with WINDOW_CLOSED outside the 24-hour
customer service window.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from server.actors.contact_actor import event_id
from server.actors.events import AgentMessage, MarkRead
from server.channels.base import TYPING
from server.documents import ContactDoc
from server.errors import InvalidInput, NotFound
from server.identity import message_address
from server.ids import ContactKey, new_id
from server.operations.agents import AgentServices, find_agent
from server.operations.contact_identifiers import IdentifierServices, Who, contact_key, find_contact_key
from server.services import ActorsHandle
from server.store.contacts import ContactRepository
from server.store.messages import MessageRepository
from server.text_input import checked_text

MAX_MESSAGES = 200


class InboxServices(AgentServices, IdentifierServices, Protocol):
    """What the agents' inbox reads and does: contacts, messages, agents and the contact's actor."""

    @property
    def actors(self) -> ActorsHandle: ...

    @property
    def contacts(self) -> ContactRepository: ...

    @property
    def messages(self) -> MessageRepository: ...


async def conversations(
    services: InboxServices,
    workspace_id: str,
    assigned_to: str | None,
    unassigned: bool,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Up to ``limit`` conversations after the cursor; ``assigned_to`` takes an agent id or e-mail."""
    agent_id = None
    if assigned_to is not None:
        agent_id = (await find_agent(services, workspace_id, assigned_to))["_id"]
    return await services.contacts.conversations(workspace_id, agent_id, unassigned, after, limit)


def sender_of(message: dict[str, Any]) -> str:
    """Who wrote a message: CUSTOMER, AGENT, FLOW (a run sent it) or SYSTEM (e.g. a broadcast)."""
    if message.get("direction") == "in":
        return "CUSTOMER"
    if message.get("sender") == "agent" or message.get("agent_id"):
        return "AGENT"
    if message.get("run_id"):
        return "FLOW"
    return "SYSTEM"


async def messages(services: InboxServices, contact: Mapping[str, Any], last: int) -> list[dict[str, Any]]:
    """The latest ``last`` messages, oldest first; ones still waiting in the outbox show as queued."""
    if last < 1 or last > MAX_MESSAGES:
        raise InvalidInput(f"last must be between 1 and {MAX_MESSAGES}", field="last")
    stored = await services.messages.conversation(ContactKey.of_contact(contact), last)
    known = {m["_id"] for m in stored}
    queued = [
        {
            **{k: v for k, v in m.items() if k not in ("id", "to")},
            "_id": m["id"],
            **message_address(m),
            "direction": "out",
            "status": "queued",
            "at": m.get("created_at"),
        }
        for m in contact.get("outbox", [])
        if m["id"] not in known and m.get("kind") != TYPING  # a read receipt is no message
    ]
    return with_reactions([*stored, *queued][-last:])


def with_reactions(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each message the customer reacted to carries the emoji (``customer_reaction``).

    A customer has one reaction per message: a later one replaces it, an empty one removes it.
    Reactions are matched within the messages given (a reaction's own message still names the
    message it is about, however old).
    """
    latest: dict[str, str] = {}
    for message in messages:
        reaction = message.get("reaction") if message.get("direction") == "in" else None
        if reaction and reaction.get("message_id"):
            latest[str(reaction["message_id"])] = str(reaction.get("emoji") or "")
    if not latest:
        return messages
    shown = []
    for message in messages:
        emoji = latest.get(str(message.get("provider_id") or message["_id"])) or latest.get(
            str(message["_id"])
        )
        shown.append({**message, "customer_reaction": emoji} if emoji else message)
    return shown


async def send_agent_message(
    services: InboxServices, workspace_id: str, who: Who, text: str, agent_ref: str | None
) -> dict[str, Any]:
    """Queue an agent's text to the customer; returns the message as the inbox shows it."""
    body = checked_text(text, field="text", what="an agent's message")
    agent_id = (await find_agent(services, workspace_id, agent_ref))["_id"] if agent_ref else None
    key = await contact_key(services, workspace_id, who)  # after the checks: a refused call claims nothing
    if agent_id is None:
        current = await services.contacts.load(key)
        agent_id = current.get("assigned_agent") if current is not None else None
    message_id = new_id("msg")
    result = await services.actors.ask(key, AgentMessage(message_id, body, agent_id))
    sent = await services.messages.get(message_id)
    if sent is not None:
        return sent
    pending = next((m for m in result.contact.get("outbox", []) if m["id"] == message_id), None)
    return {
        **{k: v for k, v in (pending or {}).items() if k not in ("id", "to")},
        "kind": "text",
        "text": body,
        "sender": "agent",
        "agent_id": agent_id,
        "_id": message_id,
        "workspace_id": workspace_id,
        **message_address(pending or {"to": result.contact.get("phone"), "contact_id": key.doc_id}),
        "direction": "out",
        "status": "queued",
        "at": (pending or {}).get("created_at") or services.clock.now(),
    }


async def mark_read(services: InboxServices, workspace_id: str, who: Who) -> ContactDoc:
    key = await find_contact_key(services, workspace_id, who)
    contact = (await services.actors.ask(key, MarkRead(event_id()))).contact if key is not None else None
    if contact is None or contact.get("version", 0) == 0:
        raise NotFound(f"no conversation with {who}")
    return contact
