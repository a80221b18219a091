"""What customers and providers send in: store it durably, then hand it to the contact's actor.

``accept_inbound`` is the one "store then tell" path for a customer message, whichever channel
brought it (the sandbox's ``customer_says`` asks and waits; the WhatsApp webhook tells and
answers at once). ``receive_whatsapp`` applies one parsed webhook batch: messages (their sender,
by phone or BSUID, found or created through ``services.directory``), statuses of our messages
(through the status ledger; they never start flows, but teach a contact its BSUID), template
news, and customers' changed numbers and BSUIDs.
Each event is stored before its actor is told, and the customer messages of a batch are told
only once the whole batch is stored, so the webhook's 200 means "stored".
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from server.actors.events import InboundMessage, TurnResult, UpdateIdentities
from server.actors.message_statuses import StatusLedger, StatusReport
from server.channels.whatsapp.webhook import InboundWhatsApp, StatusUpdate, TemplateUpdate, WebhookBatch
from server.channels.whatsapp.webhook_identities import IdentityChange
from server.contact_directory import ContactDirectory
from server.errors import InvalidInput, KonvoError, Unavailable
from server.identity import PHONE, Identities
from server.ids import ContactKey, scoped_id
from server.operations.contact_erasure import ErasedMessageServices, erased_message
from server.operations.templates import TemplateStatusServices, apply_template_status
from server.phones import parse_phone
from server.store.channels import ChannelRepository, is_connected
from server.store.messages import MessageRepository
from server.store.statuses import MessageStatusRepository, report_id

log = logging.getLogger(__name__)

CHANNEL = "whatsapp"


class InboundMessageServices(Protocol):
    """Storing an inbound message: the message repository only."""

    @property
    def messages(self) -> MessageRepository: ...


class InboundServices(ErasedMessageServices, InboundMessageServices, TemplateStatusServices, Protocol):
    """Applying a WhatsApp webhook batch: the directory, the status ledger, channels, the actors."""

    @property
    def channels(self) -> ChannelRepository: ...

    @property
    def directory(self) -> ContactDirectory: ...

    @property
    def ledger(self) -> StatusLedger: ...

    @property
    def message_statuses(self) -> MessageStatusRepository: ...


@dataclass
class Received:
    """What one webhook POST did, for the log line and the tests."""

    messages: int = 0
    duplicates: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    templates: int = 0
    identities: int = 0  # customers' number or BSUID changes followed
    ignored: list[str] = field(default_factory=list)


def inbound_record(workspace_id: str, provider_id: str, **fields: Any) -> dict[str, Any]:
    """An inbound message's document: its ``_id`` is the provider's id scoped by the workspace."""
    return {
        "_id": scoped_id(workspace_id, provider_id),
        "workspace_id": workspace_id,
        "provider_id": provider_id,
        **fields,
    }


async def accept_inbound(
    services: InboundMessageServices, record: dict[str, Any]
) -> tuple[bool, InboundMessage | None]:
    """Store an inbound message (built by ``inbound_record``) and return the event to apply.

    Returns (new, event): ``new`` is False for a provider retry; the event is None when a
    retry's message was already applied, so nothing needs telling. A retry is looked up in
    the record's own workspace only: another tenant's message with the same provider id is
    never read back, whoever posts its id.
    """
    stored_as = await services.messages.record_inbound(record)
    if stored_as is None:
        return True, InboundMessage.from_record(record)
    existing = await services.messages.get(stored_as)
    if existing is not None and await services.messages.applied(stored_as):
        return False, None
    return False, InboundMessage.from_record(existing or record)


def tell_inbound(services: InboundServices, key: ContactKey, event: InboundMessage) -> None:
    """Queue the event without waiting for its turn; if the server is stopping, recovery applies it."""
    if not services.actors.started:
        return
    try:
        future = services.actors.tell(key, event)
    except Unavailable:
        return
    future.add_done_callback(_consume)
    services.messages.settle_when_applied(event.event_id, future)  # the turn may run elsewhere


def _consume(future: asyncio.Future[TurnResult]) -> None:
    # The actor logs failed turns; reading the exception keeps asyncio from warning again.
    if not future.cancelled():
        future.exception()


async def receive_whatsapp(
    services: InboundServices, channel: dict[str, Any], batch: WebhookBatch
) -> Received:
    """Apply a verified webhook batch for ``channel``; store errors propagate (the caller answers 503)."""
    received = Received(ignored=list(batch.skipped))
    workspaces = _Workspaces(services, channel)
    accepted: list[tuple[ContactKey, InboundMessage]] = []
    for message in batch.messages:
        workspace_id, channel_id = await workspaces.channel_of(message.phone_number_id)
        if workspace_id is None or channel_id is None:
            received.ignored.append(f"message {message.wamid}: number {message.phone_number_id} not ours")
            continue
        try:
            who = _identities(message.from_, message.user_id, message.parent_user_id, message.username)
        except InvalidInput as exc:
            received.ignored.append(f"message {message.wamid}: {exc.message}")
            continue
        resolved = await services.directory.resolve(workspace_id, who)
        assert resolved is not None  # resolve creates
        record = _record(workspace_id, channel_id, resolved.key, who, message)
        new, event = await accept_inbound(services, record)
        received.messages += int(new)
        received.duplicates += int(not new)
        if event is not None:
            accepted.append((resolved.key, event))
    for status in batch.statuses:
        workspace_id, channel_id = await workspaces.channel_of(status.phone_number_id)
        if workspace_id is None or channel_id is None:
            received.ignored.append(f"status {status.wamid}: number {status.phone_number_id} not ours")
            continue
        report = _report(status)
        outcome = await services.ledger.report(workspace_id, channel_id, report)
        if outcome == "parked" and await erased_message(services, workspace_id, status.wamid):
            # about a message of a contact erased since: dropped, and no contact comes back
            await services.message_statuses.set_state(
                report_id(workspace_id, report.provider_id, report.status), "erased"
            )
            received.statuses["erased"] = received.statuses.get("erased", 0) + 1
            continue
        received.statuses[outcome] = received.statuses.get(outcome, 0) + 1
        await _learn_identities(services, workspace_id, status)
    for update in batch.templates:
        if await _template_update(services, channel, update, received):
            received.templates += 1
    for change in batch.identity_changes:
        workspace_id, _ = await workspaces.channel_of(change.phone_number_id)
        if workspace_id is None:
            received.ignored.append(
                f"identity change {change.event_id}: number {change.phone_number_id} not ours"
            )
            continue
        await _identity_change(services, workspace_id, change, received)
    for key, event in accepted:  # only now: everything above is stored
        tell_inbound(services, key, event)
    return received


def _identities(
    wa_id: str | None, user_id: str | None, parent_user_id: str | None, username: str | None = None
) -> Identities:
    """What Meta says a customer is known by; a phone that does not parse is refused only when
    there is no BSUID to know them by instead."""
    phone = None
    if wa_id:
        try:
            phone = _phone(wa_id)
        except InvalidInput:
            if not (user_id or parent_user_id):
                raise
    who = Identities(phone, user_id, parent_user_id, username)
    if not who:
        raise InvalidInput("the sender has no phone number and no BSUID")
    return who


async def _learn_identities(services: InboundServices, workspace_id: str, status: StatusUpdate) -> None:
    """A status about a message we sent to a phone also names the customer's BSUID (and the other
    way round): the contact it is about learns what it did not know. No contact is created."""
    person = status.recipient
    if not (person.wa_id and (person.user_id or person.parent_user_id)):
        return
    try:
        who = _identities(person.wa_id, person.user_id, person.parent_user_id)
    except InvalidInput:
        return
    resolved = await services.directory.resolve(workspace_id, who, create=False)
    if resolved is not None and (resolved.claimed or resolved.merged):
        event = UpdateIdentities(
            f"learned:{scoped_id(workspace_id, status.wamid)}:{status.status}", **who.fields()
        )
        await _ask(services, resolved.key, event)


async def _identity_change(
    services: InboundServices, workspace_id: str, change: IdentityChange, received: Received
) -> None:
    """A customer's number or BSUID changed: the contact follows it (``ContactDirectory.move``)."""
    try:
        old, new = change.old, change.new
        if change.kind == PHONE:
            old, new = (_phone(old) if old else None), _phone(new)
        person = change.person
        if old is not None:
            resolved = await services.directory.move(workspace_id, change.kind, old, new)
        else:  # the old one was not in the webhook: find them by what it does say
            who = _identities(person.wa_id, person.user_id, person.parent_user_id)
            resolved = await services.directory.resolve(
                workspace_id, replace(who, **{change.kind: new}), create=False
            )
    except InvalidInput as exc:
        received.ignored.append(f"identity change {change.event_id}: {exc.message}")
        return
    if resolved is None:
        received.ignored.append(f"identity change {change.event_id}: nobody known by it")
        return
    event = UpdateIdentities(scoped_id(workspace_id, change.event_id), **{change.kind: new})
    await _ask(services, resolved.key, event)
    received.identities += 1


async def _ask(services: InboundServices, key: ContactKey, event: UpdateIdentities) -> None:
    """Wait for the turn: the webhook is answered (and not retried by Meta) only once it is applied."""
    if not services.actors.started:
        raise Unavailable("the server is not started")
    try:
        await services.actors.ask(key, event)
    except KonvoError as exc:  # contended or moving: Meta repeats the webhook (the move is idempotent)
        raise Unavailable(f"the contact's identities were not updated yet: {exc.message}") from exc


class _Workspaces:
    """The workspace and channel of each business number in the batch: the receiving channel's, or none.

    One Meta app (one webhook URL, one app secret) may serve several numbers; an event for
    another number is taken only if that number is a connected channel of the same workspace
    sharing this channel's app secret, and is recorded as that number's (a reply goes out through
    the number the customer wrote to). A webhook URL belongs to one tenant, and a number id is
    unique within a workspace only, so an event never crosses into another workspace whatever
    it names.
    """

    def __init__(self, services: InboundServices, channel: dict[str, Any]) -> None:
        self._services = services
        self._channel = channel
        own = (channel["workspace_id"], channel["_id"])
        self._known: dict[str | None, tuple[str | None, str | None]] = {
            None: own,
            channel.get("phone_number_id"): own,
        }

    async def channel_of(self, phone_number_id: str | None) -> tuple[str | None, str | None]:
        """(workspace id, channel id) of the number, or (None, None) when it is not this app's."""
        if phone_number_id not in self._known:
            workspace_id = self._channel["workspace_id"]
            other = await self._services.channels.by_phone_number_id(workspace_id, phone_number_id or "")
            same_app = (
                other is not None
                and is_connected(other)
                and other.get("app_secret") == self._channel.get("app_secret")
            )
            self._known[phone_number_id] = (
                (workspace_id, other["_id"]) if same_app and other else (None, None)
            )
        return self._known[phone_number_id]


def _phone(wa_id: str) -> str:
    """Meta writes the customer's number as digits without the ``+`` (and knows it exists)."""
    return parse_phone(wa_id, field="from", bare_international=True, from_provider=True)


def _record(
    workspace_id: str, channel_id: str, key: ContactKey, who: Identities, message: InboundWhatsApp
) -> dict[str, Any]:
    record = inbound_record(
        workspace_id,
        message.wamid,
        contact_id=key.doc_id,
        phone=who.phone,
        channel=CHANNEL,
        channel_id=channel_id,
        kind=message.kind,
        text=message.text,
        button_id=message.button_id,
        name=message.profile_name,
        at=message.at,
        payload=message.raw,
    )
    optional = {
        "bsuid": who.bsuid,
        "parent_bsuid": who.parent_bsuid,
        "username": who.username,
        "reply_type": message.reply_type,
        "media": message.media,
        "location": message.location,
        "contacts": message.contacts,
        "reaction": message.reaction,
        "context": message.context,
        "form": message.form,
        "errors": message.errors or None,
    }
    record.update({k: v for k, v in optional.items() if v is not None})
    return record


def _report(status: StatusUpdate) -> StatusReport:
    return StatusReport(
        provider_id=status.wamid,
        status=status.status,
        at=status.at,
        error_code=status.error_code,
        error=status.error,
        errors=status.errors,
        pricing=status.pricing,
        conversation=status.conversation,
    )


async def _template_update(
    services: InboundServices, channel: dict[str, Any], update: TemplateUpdate, received: Received
) -> bool:
    """Hand a template status change to the templates use case; quality/category news is logged."""
    waba_id = channel.get("waba_id")
    if update.waba_id and waba_id and update.waba_id != waba_id:
        received.ignored.append(f"template {update.name}: account {update.waba_id} is not this channel's")
        return False
    if update.field != "message_template_status_update":
        log.info("template %s %s: %s", update.name, update.field, update.raw)
        received.ignored.append(f"template {update.name}: {update.field} noted")
        return False
    try:
        await apply_template_status(
            services,
            channel["workspace_id"],
            meta_id=update.meta_id,
            name=update.name or "",
            language=update.language or "",
            status=update.event or "",
            reason=update.reason,
        )
    except KonvoError as exc:  # e.g. a template made in WhatsApp Manager that we never knew
        log.warning(
            "template status %s for %s/%s not applied: %s", update.event, update.name, update.language, exc
        )
        received.ignored.append(f"template {update.name}: {exc.message}")
        return False
    return True
