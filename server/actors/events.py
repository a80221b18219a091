"""Events a contact actor handles; each has an id so applying it twice has no effect."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from server.documents import ContactDoc, RunDoc


@dataclass(frozen=True)
class StartFlow:
    """Start a run; ``channel_id`` is the number it talks through when the caller chose one (a
    trigger's, a broadcast's, ``startFlow``'s), else the flow's, else the workspace's default."""

    event_id: str
    flow_id: str
    trigger: dict[str, Any] = field(default_factory=dict)
    source: str = "api"
    channel_id: str | None = None
    # Contact data written in the turn that starts the run (typed already; links: external fields).
    contact_values: dict[str, Any] = field(default_factory=dict)
    contact_links: dict[str, dict[str, Any]] = field(default_factory=dict)
    contact_tags: tuple[str, ...] = ()


# Inbound kinds read by the reply rules (text, taps); the others (media, location, a form's
# answer, contacts, reactions...) answer only a node that asked for them (a location request, a
# WhatsApp Flow), and otherwise are recorded.
ANSWER_KINDS = ("text", "button")


@dataclass(frozen=True)
class InboundMessage:
    """What the customer said; ``event_id`` is the provider's message id (the dedupe key).

    ``kind`` is ``text``/``button`` for answers, else what was sent (``image``, ``location``,
    ``nfm_reply``...); ``location`` and ``form`` carry a shared location and a form's answer.
    ``channel_id``: the number the customer wrote to (None in the sandbox); what answers them
    goes out through it.
    """

    event_id: str
    at: datetime
    text: str | None = None
    button_id: str | None = None
    name: str | None = None
    kind: str = "text"
    # Where it came from: the typing indicator marks this very message read (docs/sending.md).
    provider_id: str | None = None
    channel: str | None = None
    channel_id: str | None = None
    location: dict[str, Any] | None = None
    form: dict[str, Any] | None = None
    # Who wrote, as the channel identified them (server/identity.py): the contact keeps the latest.
    phone: str | None = None
    bsuid: str | None = None
    parent_bsuid: str | None = None
    username: str | None = None

    @property
    def moves_runs(self) -> bool:
        return self.kind in ANSWER_KINDS

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> InboundMessage:
        """The event of a stored inbound message (first delivery, a provider retry, or recovery)."""
        kind = record.get("kind") or ("button" if record.get("button_id") is not None else "text")
        return cls(
            event_id=record["_id"],
            at=record["at"],
            text=record.get("text"),
            button_id=record.get("button_id"),
            name=record.get("name"),
            kind=kind,
            provider_id=record.get("provider_id"),
            channel=record.get("channel"),
            channel_id=record.get("channel_id"),
            location=record.get("location"),
            form=record.get("form"),
            phone=record.get("phone"),
            bsuid=record.get("bsuid"),
            parent_bsuid=record.get("parent_bsuid"),
            username=record.get("username"),
        )


@dataclass(frozen=True)
class TimerFired:
    event_id: str  # the timer id


@dataclass(frozen=True)
class StopRun:
    event_id: str
    run_id: str
    reason: str = "stopped"


@dataclass(frozen=True)
class Redeliver:
    """Send whatever is still in the contact's outbox (recovery after a failed or lost send)."""

    event_id: str


@dataclass(frozen=True)
class DeferSend:
    """Keep an outbox message until ``until`` (send policy: Meta said "later", or quiet hours
    caught it at the channel); recorded on the message, its run and a wake timer."""

    event_id: str
    message_id: str
    until: datetime
    reason: str  # QUIET_HOURS, or Meta's error code
    detail: dict[str, Any] = field(default_factory=dict)
    attempt: int | None = None  # the retry this is (counted against the code's schedule)
    whole_contact: bool = False


@dataclass(frozen=True)
class MessageStatus:
    """What became of an outbound message (provider status webhook, or a permanent send failure).

    ``event_id`` is unique per (message, status) so a repeated webhook is applied once; statuses
    may arrive out of order, and the contact keeps the furthest one (read > delivered > sent).
    """

    event_id: str
    message_id: str
    status: str  # sent | delivered | read | failed
    at: datetime
    error_code: str | None = None
    error: str | None = None
    pricing: dict[str, Any] | None = None
    error_title: str | None = None


@dataclass
class TurnResult:
    """What a turn produced, for the caller that asked (API mutations wait for it)."""

    contact: ContactDoc
    run: RunDoc | None = None
    duplicate: bool = False
    changed: bool = True


@dataclass(frozen=True)
class EndFlowRuns:
    """End this contact's runs of ``flow_id`` on versions older than ``below_version`` (publish exit)."""

    event_id: str
    flow_id: str
    below_version: int
    reason: str = "version_replaced"


# --- contact commands (API, inbox, integrations): applied by server/actors/contact_commands.py ---


@dataclass(frozen=True)
class TagContact:
    """Add and remove tags (names already checked against the catalog)."""

    event_id: str
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class SetVariables:
    """Set typed variables; ``values`` are already coerced, ``links`` are the fields' external links."""

    event_id: str
    values: dict[str, Any]
    links: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = "api"


@dataclass(frozen=True)
class ImportContact:
    """One import row applied in one turn: typed ``values`` (already coerced), tags to add, consent.

    Only what differs is written, so the same row imported twice changes nothing the second
    time (no tag twice, no second consent entry); a new contact is stored even with nothing
    else to set (a row with only a phone).
    """

    event_id: str
    values: dict[str, Any] = field(default_factory=dict)
    links: dict[str, dict[str, Any]] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    opted_in: bool | None = None


@dataclass(frozen=True)
class EraseContact:
    """A data-subject erasure: the document becomes its tombstone (``server/operations/contact_erasure.py``).

    ``tombstone``: what stays (keyed hashes of the identities, who erased it and when); runs,
    timers, outbox and external syncs go with everything else, in the contact's own turn.
    """

    event_id: str
    tombstone: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SetConsent:
    """Marketing consent given or withdrawn by ``source`` (api | keyword), recorded with who/where."""

    event_id: str
    opted_in: bool
    source: str = "api"
    by: str | None = None
    key_id: str | None = None


@dataclass(frozen=True)
class AssignAgent:
    """A human takes the conversation; ``agent`` is the stored agent document (already picked)."""

    event_id: str
    agent: dict[str, Any]
    team: str | None = None
    by: str | None = None


@dataclass(frozen=True)
class ReleaseContact:
    """The agent hands the conversation back to the flows."""

    event_id: str
    by: str | None = None


@dataclass(frozen=True)
class AgentMessage:
    """An agent writes to the customer (refused with WINDOW_CLOSED outside the 24-hour window)."""

    event_id: str
    text: str
    agent_id: str | None = None


@dataclass(frozen=True)
class MarkRead:
    event_id: str


@dataclass(frozen=True)
class ExternalSyncResult:
    """What became of one queued external profile update (``ok``, or the error and when to retry)."""

    event_id: str
    sync_id: str
    ok: bool
    error: str | None = None
    retry_at: datetime | None = None  # None with ok False: given up for good


# --- identities (server/actors/identity_commands.py) -----------------------------------------------


@dataclass(frozen=True)
class UpdateIdentities:
    """The customer's phone, BSUID or username became known or changed (already claimed for
    this contact in the directory); the contact document keeps the latest of each."""

    event_id: str
    phone: str | None = None
    bsuid: str | None = None
    parent_bsuid: str | None = None
    username: str | None = None


@dataclass(frozen=True)
class MergeInto:
    """This contact is the same person as contact ``into`` (which remains): its runs end, and
    from now on its actor hands what it receives to ``into``."""

    event_id: str
    into: str


@dataclass(frozen=True)
class AbsorbContact:
    """Take in what a contact merged into this one knew (``absorbed``: its document) by the merge rule."""

    event_id: str
    absorbed: dict[str, Any]


IDENTITY_COMMANDS = (UpdateIdentities, MergeInto, AbsorbContact)

CONTACT_COMMANDS = (
    TagContact,
    SetVariables,
    ImportContact,
    EraseContact,
    SetConsent,
    AssignAgent,
    ReleaseContact,
    AgentMessage,
    MarkRead,
    ExternalSyncResult,
)

Event = (
    StartFlow
    | InboundMessage
    | TimerFired
    | StopRun
    | Redeliver
    | DeferSend
    | EndFlowRuns
    | MessageStatus
    | TagContact
    | SetVariables
    | ImportContact
    | EraseContact
    | SetConsent
    | AssignAgent
    | ReleaseContact
    | AgentMessage
    | MarkRead
    | ExternalSyncResult
    | UpdateIdentities
    | MergeInto
    | AbsorbContact
)
