"""Contact-level use cases: start/stop runs and what the customer says, routed through actors."""

from __future__ import annotations

from typing import Any

from server.actors.contact_actor import event_id
from server.actors.events import StartFlow, StopRun
from server.actors.shards import ShardedActors
from server.channels.choice import chosen_channel_id
from server.errors import InvalidInput, NotFound
from server.ids import ContactKey, new_id
from server.operations.channel_inbound import accept_inbound, inbound_record
from server.operations.phone_input import contact_key
from server.runtime import Runtime
from server.text_input import MAX_BUTTON_ID, MAX_MESSAGE_TEXT, checked_characters


def _actors(runtime: Runtime) -> ShardedActors:
    assert runtime.actors is not None, "runtime not started"
    return runtime.actors


async def start_flow(
    runtime: Runtime,
    workspace_id: str,
    flow_id: str,
    phone: str,
    variables: Any,
    channel_id: str | None = None,
) -> dict[str, Any]:
    """Start a run now; ``channel_id`` (checked) is the number it talks through, else the flow's own
    channel, else the workspace's default."""
    if variables is not None and not isinstance(variables, dict):
        raise InvalidInput("variables must be a JSON object", field="variables")
    channel_id = await chosen_channel_id(runtime.channels, workspace_id, channel_id)
    key = await contact_key(runtime, workspace_id, phone)
    event = StartFlow(event_id(), flow_id, trigger=dict(variables or {}), source="api", channel_id=channel_id)
    result = await _actors(runtime).ask(key, event)
    assert result.run is not None
    return {**result.run, "contact_id": key.doc_id, "phone": key.phone, "workspace_id": workspace_id}


async def stop_run(runtime: Runtime, workspace_id: str, run_id: str) -> dict[str, Any]:
    contact = await runtime.contacts.find_run(workspace_id, run_id)
    if contact is None:
        raise NotFound(f"run {run_id} not found or already archived")
    key = ContactKey(workspace_id, contact["phone"])
    result = await _actors(runtime).ask(key, StopRun(event_id(), run_id))
    assert result.run is not None
    return {**result.run, "contact_id": key.doc_id, "phone": key.phone, "workspace_id": workspace_id}


async def customer_says(
    runtime: Runtime,
    workspace_id: str,
    phone: str,
    text: str | None,
    button_id: str | None,
    provider_id: str | None = None,
    channel: str = "sandbox",
) -> bool:
    """Record an inbound message durably, then apply it; True when it was new (not a retry)."""
    if text is None and button_id is None:
        raise InvalidInput("say something: give a text or a buttonId")
    if text is not None:  # kept as typed: opt-out words and replies are matched on it
        checked_characters(text, field="text", what="the customer's message", limit=MAX_MESSAGE_TEXT)
    if button_id is not None:
        checked_characters(button_id, field="buttonId", what="a button id", limit=MAX_BUTTON_ID)
    key = await contact_key(runtime, workspace_id, phone)
    stored, event = await accept_inbound(
        runtime,
        inbound_record(
            workspace_id,
            provider_id or new_id("in"),
            phone=key.phone,
            channel=channel,
            kind="button" if button_id is not None else "text",
            text=text,
            button_id=button_id,
            at=runtime.clock.now(),
        ),
    )
    if event is not None:
        await _actors(runtime).ask(key, event)
    return stored
