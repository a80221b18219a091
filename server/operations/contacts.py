"""Contact-level use cases: start/stop runs and what the customer says, routed through actors."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol

from server.actors.contact_actor import event_id, startable
from server.actors.events import StartFlow, StopRun
from server.channels.choice import chosen_channel_id
from server.clock import Clock
from server.documents import RunDoc
from server.errors import InvalidInput, NotFound
from server.identity import Identities
from server.ids import ContactKey, new_id
from server.operations.channel_inbound import InboundMessageServices, accept_inbound, inbound_record
from server.operations.contact_data import ContactCheckServices, checked_contact_data
from server.operations.contact_identifiers import IdentifierServices, Who, contact_key, identities_of
from server.operations.sandbox_share import SandboxShare
from server.services import ActorsHandle
from server.store.channels import ChannelRepository
from server.store.contacts import ContactRepository
from server.store.flows import FlowRepository
from server.text_input import MAX_BUTTON_ID, MAX_MESSAGE_TEXT, checked_characters


class ContactRunServices(ContactCheckServices, IdentifierServices, InboundMessageServices, Protocol):
    """What starting and stopping runs and sandbox messages use."""

    @property
    def actors(self) -> ActorsHandle: ...

    @property
    def channels(self) -> ChannelRepository: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def contacts(self) -> ContactRepository: ...

    @property
    def flows(self) -> FlowRepository: ...


async def start_flow(
    services: ContactRunServices,
    workspace_id: str,
    flow_id: str,
    who: Who,
    variables: Any,
    contact: Any = None,
    channel_id: str | None = None,
) -> dict[str, Any]:
    """Start a run now; ``contact`` ({fields, tags}) is typed against the workspace's fields and
    written in the turn that starts it, so the first message already renders ``{{contact.<field>}}``;
    ``channel_id`` (checked) is the number it talks through, else the flow's own channel, else the
    workspace's default."""
    if variables is not None and not isinstance(variables, dict):
        raise InvalidInput("variables must be a JSON object", field="variables")
    # Checked before the contact is named: a refused call claims no identity (the turn checks again).
    data = await checked_contact_data(services, workspace_id, contact)
    startable(await services.flows.get_recent(workspace_id, flow_id), flow_id)
    channel_id = await chosen_channel_id(services.channels, workspace_id, channel_id)
    key = await contact_key(services, workspace_id, who)
    event = StartFlow(
        event_id(),
        flow_id,
        trigger=dict(variables or {}),
        source="api",
        channel_id=channel_id,
        contact_values=data.values,
        contact_links=data.links,
        contact_tags=data.tags,
    )
    result = await services.actors.ask(key, event)
    assert result.run is not None
    return _run_view(result.run, result.contact, workspace_id)


async def stop_run(services: ContactRunServices, workspace_id: str, run_id: str) -> dict[str, Any]:
    contact = await services.contacts.find_run(workspace_id, run_id)
    if contact is None:
        raise NotFound(f"run {run_id} not found or already archived")
    result = await services.actors.ask(ContactKey.of_contact(contact), StopRun(event_id(), run_id))
    assert result.run is not None
    return _run_view(result.run, result.contact, workspace_id)


def _run_view(run: RunDoc, contact: Mapping[str, Any], workspace_id: str) -> dict[str, Any]:
    """A run as the API shows it, with the contact it belongs to."""
    return {**run, "contact_id": contact["_id"], "phone": contact.get("phone"), "workspace_id": workspace_id}


async def customer_says(
    services: ContactRunServices,
    workspace_id: str,
    who: Who | Identities,
    text: str | None,
    button_id: str | None,
    provider_id: str | None = None,
    channel: str = "sandbox",
    *,
    shared: SandboxShare | None = None,
) -> bool:
    """Record an inbound message durably, then apply it; True when it was new (not a retry).

    ``who``: the customer's phone (or a ``ContactRef``), or the ``Identities`` a channel knows
    them by (the sandbox plays a customer without a phone number by their BSUID). ``shared`` is
    what the customer sends that is not text or a tap (a location, a form's answer, a reaction)
    and which message they quote, as WhatsApp reports them.
    """
    extra = shared.record() if shared is not None else {}
    kind = extra.pop("kind", None)
    if text is None and button_id is None and kind is None:
        raise InvalidInput("say something: give a text, a buttonId, a location, a flowResponse or a reaction")
    if kind is not None and (text is not None or button_id is not None):
        raise InvalidInput("send one thing at a time: text (or a button), a location, a form or a reaction")
    kind = kind or ("button" if button_id is not None else "text")
    if text is not None:  # kept as typed: opt-out words and replies are matched on it
        checked_characters(text, field="text", what="the customer's message", limit=MAX_MESSAGE_TEXT)
    if button_id is not None:
        checked_characters(button_id, field="buttonId", what="a button id", limit=MAX_BUTTON_ID)
    identities = who if isinstance(who, Identities) else await identities_of(services, workspace_id, who)
    resolved = await services.directory.resolve(workspace_id, identities)
    assert resolved is not None  # resolve creates
    key = resolved.key
    stored, event = await accept_inbound(
        services,
        inbound_record(
            workspace_id,
            provider_id or new_id("in"),
            contact_id=key.doc_id,
            channel=channel,
            kind=kind,
            text=text,
            button_id=button_id,
            at=services.clock.now(),
            **{"phone": None, **identities.fields(), **extra},
        ),
    )
    if event is not None:
        turn = asyncio.ensure_future(services.actors.ask(key, event))
        services.messages.settle_when_applied(event.event_id, turn)  # the turn may run elsewhere
        await turn
    return stored
