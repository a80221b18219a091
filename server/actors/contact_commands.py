"""Contact commands from the API, the inbox and integrations, applied inside the contact's actor turn.

They run in the actor (not as direct store writes) so each is one CAS write of the contact,
ordered with what the customer and the flows do, and published like any other change.
Synchronous and free of I/O: the caller has already looked up and checked what needs the store.
"""

from __future__ import annotations

from typing import Any, cast

from server.actors.events import (
    AgentMessage,
    AssignAgent,
    EraseContact,
    Event,
    ExternalSyncResult,
    ImportContact,
    InboundMessage,
    MarkRead,
    ReleaseContact,
    SetConsent,
    SetVariables,
    TagContact,
    TurnResult,
)
from server.errors import InvalidInput, WindowClosed
from server.identity import address_of
from server.machines.contact_state import (
    clear_assignment,
    note_inbound,
    opt_out_word,
    queue_external_sync,
    set_assignment,
    set_consent,
)
from server.machines.contact_state import opt_out_keys as default_opt_out_keys
from server.machines.turn import Turn, record_step


def apply_command(turn: Turn, event: Event) -> TurnResult:
    contact = turn.contact
    if isinstance(event, TagContact):
        return _tag(turn, event)
    if isinstance(event, SetVariables):
        variables = contact.setdefault("variables", {})
        for name, value in event.values.items():
            variables[name] = value
            link = event.links.get(name)
            if link is not None:
                queue_external_sync(contact, link, name, value, turn.now)
        return TurnResult(contact)
    if isinstance(event, ImportContact):
        return _import(turn, event)
    if isinstance(event, EraseContact):
        return _erase(turn, event)
    if isinstance(event, SetConsent):
        changed = set_consent(
            contact, event.opted_in, turn.now, event.source, by=event.by, key_id=event.key_id
        )
        return TurnResult(contact, changed=changed)
    if isinstance(event, AssignAgent):
        set_assignment(contact, event.agent, turn.now, source="api", team=event.team, by=event.by)
        return TurnResult(contact)
    if isinstance(event, ReleaseContact):
        return TurnResult(contact, changed=clear_assignment(contact, turn.now, source="api", by=event.by))
    if isinstance(event, AgentMessage):
        return _agent_message(turn, event)
    if isinstance(event, MarkRead):
        if not contact.get("unread"):
            return TurnResult(contact, changed=False)
        contact["unread"] = 0
        return TurnResult(contact)
    if isinstance(event, ExternalSyncResult):
        return _sync_result(turn, event)
    raise InvalidInput(f"unknown contact command {type(event).__name__}")


def _tag(turn: Turn, event: TagContact) -> TurnResult:
    contact = turn.contact
    tags: list[str] = list(contact.get("tags", []))
    before = list(tags)
    if len(event.add) == len(event.remove) == 1 and event.remove[0] in tags and event.add[0] not in tags:
        tags[tags.index(event.remove[0])] = event.add[0]  # a renamed tag keeps its place
    for name in event.add:
        if name not in tags:
            tags.append(name)
    tags = [t for t in tags if t not in event.remove]
    contact["tags"] = tags
    return TurnResult(contact, changed=tags != before)


def _import(turn: Turn, event: ImportContact) -> TurnResult:
    """Apply one import row; ``changed`` False when the contact already held all of it."""
    contact = turn.contact
    changed = set_contact_data(turn, event.values, event.links, event.tags)
    if event.opted_in is not None:
        changed = set_consent(contact, event.opted_in, turn.now, "import") or changed
    return TurnResult(contact, changed=changed or contact["version"] == 0)  # a new contact is stored


TOMBSTONE_KEEPS = ("_id", "workspace_id", "version", "lease_epoch", "applied_events")


def _erase(turn: Turn, event: EraseContact) -> TurnResult:
    """Everything about the person goes; the tombstone stays under the same id (and is no contact)."""
    # Every key goes, also one no ContactDoc lists (written by an older server): the document is
    # handled as the plain dict it is, here only.
    contact = cast(dict[str, Any], turn.contact)
    for name in [k for k in contact if k not in TOMBSTONE_KEEPS]:
        del contact[name]
    contact.update(
        {
            "merged_into": None,
            "runs": [],
            "timers": [],
            "outbox": [],
            "tags": [],
            "variables": {},
            "applied_events": [],
            **event.tombstone,
        }
    )
    return TurnResult(turn.contact)


def set_contact_data(
    turn: Turn, values: dict[str, Any], links: dict[str, dict[str, Any]], tags: tuple[str, ...]
) -> bool:
    """Set typed variables and add tags where they differ (a linked field queues its external
    sync); True when something changed. Imports and flow starts that carry contact data use it."""
    contact = turn.contact
    changed = False
    variables = contact.setdefault("variables", {})
    for name, value in values.items():
        if name in variables and variables[name] == value:
            continue
        variables[name] = value
        changed = True
        link = links.get(name)
        if link is not None:
            queue_external_sync(contact, link, name, value, turn.now)
    held: list[str] = contact.setdefault("tags", [])
    for name in tags:
        if name not in held:
            held.append(name)
            changed = True
    return changed


def _agent_message(turn: Turn, event: AgentMessage) -> TurnResult:
    contact = turn.contact
    if not turn.window_open():
        who = contact.get("phone") or contact.get("username") or contact["_id"]
        raise WindowClosed(
            f"the 24-hour window with {who} is closed (the customer has not written in the "
            "last 24 hours); only a template can reopen the conversation",
            phone=contact.get("phone"),
        )
    contact.setdefault("outbox", []).append(
        {
            "id": event.event_id,
            "run_id": None,
            "flow_id": None,
            "node": None,
            **address_of(contact),
            "created_at": turn.now,
            "kind": "text",
            "text": event.text,
            "sender": "agent",
            "agent_id": event.agent_id,
            # The number the customer last wrote to (None: the default channel sends it).
            "channel_id": contact.get("inbound_channel_id"),
        }
    )
    contact["unread"] = 0  # answering the customer means the agent has read the conversation
    return TurnResult(contact)


def _sync_result(turn: Turn, event: ExternalSyncResult) -> TurnResult:
    contact = turn.contact
    entries: list[dict[str, Any]] = contact.get("external_sync", [])
    entry = next((e for e in entries if e["id"] == event.sync_id), None)
    if entry is None:
        return TurnResult(contact, changed=False)  # replaced by a newer value meanwhile
    entry["attempts"] = int(entry.get("attempts") or 0) + 1
    if event.ok:
        contact["external_sync"] = [e for e in entries if e["id"] != entry["id"]]
        outcome = "ok"
    else:
        entry["last_error"] = event.error
        if event.retry_at is None:
            entry["gave_up"] = True
            outcome = "FAILED"
        else:
            entry["next_attempt_at"] = event.retry_at
            outcome = "RETRYING"
    run = next((r for r in contact.get("runs", []) if r["id"] == entry.get("run_id")), None)
    if run is not None:
        detail: dict[str, Any] = {
            "provider": entry["provider"],
            "property": entry["property"],
            "field": entry["field"],
            "attempt": entry["attempts"],
        }
        if not event.ok:
            detail["error"] = event.error
            detail["retry_at"] = event.retry_at
        record_step(turn, run, entry.get("node"), "external_sync", outcome, detail=detail)
    return TurnResult(contact, run=run)


class TurnExtras:
    """What a turn needs from the workspace beyond fields: read through a short cache per process."""

    def __init__(
        self,
        template_categories: dict[tuple[str, str], str] | None = None,
        field_links: dict[str, dict[str, Any]] | None = None,
        opt_out_keys: frozenset[str] | None = None,
        template_buttons: dict[tuple[str, str], list[str]] | None = None,
        templates: dict[tuple[str, str], dict[str, Any]] | None = None,
        locale: str | None = None,
    ) -> None:
        self.template_categories = template_categories or {}
        self.field_links = field_links or {}
        self.opt_out_keys = opt_out_keys if opt_out_keys is not None else default_opt_out_keys()
        # (name, language) -> quick-reply titles: typed titles answer a template's buttons too.
        self.template_buttons = template_buttons or {}
        self.templates = templates or {}
        self.locale = locale

    def fill(self, turn: Turn) -> None:
        turn.template_categories = self.template_categories
        turn.field_links = self.field_links
        turn.template_buttons = self.template_buttons
        turn.templates = self.templates
        if self.locale is not None:
            turn.locale = self.locale


def screen_inbound(turn: Turn, event: InboundMessage, extras: TurnExtras) -> str | None:
    """Inbox bookkeeping, then what comes before any flow sees a customer message.

    Returns why flows must not see it: ``opt_out`` (the whole message is STOP, BAJA or one of
    the workspace's words; recorded with the keyword and message id) or ``assigned`` (a human
    owns the conversation: it waits in the inbox, and a run waiting for a reply keeps waiting,
    its no-reply time counted again from this message, until that time or the release). None
    lets flows handle it.
    """
    contact = turn.contact
    note_inbound(contact, event.at)
    word = opt_out_word(event.text, extras.opt_out_keys) if event.button_id is None else None
    if word is not None:
        set_consent(
            contact, False, turn.now, "keyword", keyword=word, text=event.text, message_id=event.event_id
        )
        return "opt_out"
    if contact.get("assigned_agent"):
        return "assigned"
    return None
