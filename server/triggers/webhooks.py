"""Webhook triggers: create/list/delete them, and accept ``POST /hooks/{id}`` requests.

A request is authenticated (``server/triggers/signatures.py``; a timestamped signature is used
once: ``server/triggers/replays.py``), mapped, and stored in ``hook_requests`` under
``{trigger}:{idempotency key}`` before it is acknowledged; only then is it handed to the contact's
actor as a ``StartFlow`` whose event id derives from the same key. A retry of a stored request
finds it there (and the actor's ``applied_events`` drops a second application), so it starts one
run; recovery re-applies requests a crash left stored but unapplied.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any, Protocol

from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from server.actors.events import StartFlow
from server.channels.choice import chosen_channel_id
from server.clock import Clock
from server.config import Settings
from server.contact_directory import ContactDirectory
from server.errors import InvalidInput, KonvoError, NotFound
from server.identity import Identities
from server.ids import new_id
from server.json_limits import JsonTooDeep, check_json_depth
from server.operations.contact_data import ContactCheckServices, check_contact_names, checked_contact_data
from server.services import ActorsHandle, SignatureClaims
from server.store.channels import ChannelRepository
from server.store.flows import FlowRepository
from server.store.triggers import HookRequestRepository, WebhookTriggerRepository
from server.triggers.mapping import Extracted, PayloadError, WebhookMapping, extract, parse_mapping
from server.triggers.signatures import SCHEMES, scheme_of, verify
from server.workspace_gate import WorkspaceGate

log = logging.getLogger(__name__)

IDEMPOTENCY_HEADERS = ("idempotency-key", "x-shopify-webhook-id")
MAX_KEY_LENGTH = 200


class HookApplyServices(Protocol):
    """Handing a stored webhook request to its contact's actor."""

    @property
    def actors(self) -> ActorsHandle: ...

    @property
    def directory(self) -> ContactDirectory: ...

    @property
    def hook_requests(self) -> HookRequestRepository: ...

    @property
    def workspace_gate(self) -> WorkspaceGate: ...


class HookReceiveServices(ContactCheckServices, HookApplyServices, Protocol):
    """Accepting a ``POST /hooks/{id}`` request: the trigger, its signature's single use, the store."""

    @property
    def clock(self) -> Clock: ...

    @property
    def flows(self) -> FlowRepository: ...

    @property
    def replays(self) -> SignatureClaims: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def webhooks(self) -> WebhookTriggerRepository: ...


class WebhookTriggerServices(ContactCheckServices, Protocol):
    """Creating and changing webhook triggers."""

    @property
    def channels(self) -> ChannelRepository: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def flows(self) -> FlowRepository: ...

    @property
    def webhooks(self) -> WebhookTriggerRepository: ...


def hook_event_id(trigger_id: str, key: str) -> str:
    return f"hook:{trigger_id}:{key}"


def _new_secret(given: str | None) -> str:
    """The caller's secret (Shopify's signing key is Shopify's), else a generated one."""
    if given is not None and len(given.strip()) < 16:
        raise InvalidInput("secret: use at least 16 characters", field="secret")
    return given.strip() if given else secrets.token_hex(32)


async def create_webhook_trigger(
    services: WebhookTriggerServices,
    workspace_id: str,
    flow_id: str,
    mapping: Any,
    secret: str | None = None,
    channel_id: str | None = None,
) -> dict[str, Any]:
    """A new trigger for ``flow_id``, with its secret: the only time the secret is shown.

    ``channel_id``: the number its runs talk through (None: the flow's, else the default)."""
    parsed = parse_mapping(mapping)
    if parsed.contact is not None:  # a field or tag the catalog lacks is refused now, not per request
        await check_contact_names(
            services, workspace_id, list(parsed.contact.fields), parsed.contact.tags, "mapping.contact"
        )
    if await services.flows.get(workspace_id, flow_id) is None:
        raise NotFound(f"flow {flow_id} not found", field="flowId")
    channel_id = await chosen_channel_id(services.channels, workspace_id, channel_id)
    document = {
        "_id": new_id("hook"),
        "workspace_id": workspace_id,
        "flow_id": flow_id,
        "mapping": parsed.model_dump(exclude_none=True),
        # Kept with the trigger: what ``konvo`` means changed once (scheme_of), and may again.
        "signature_scheme": parsed.signature,
        "secret": _new_secret(secret),
        "created_at": services.clock.now(),
        "channel_id": channel_id,
    }
    return await services.webhooks.insert(document)


async def set_webhook_trigger_channel(
    services: WebhookTriggerServices, workspace_id: str, trigger_id: str, channel_id: str | None
) -> dict[str, Any]:
    """Choose the number the trigger's runs talk through (None: the flow's, else the default)."""
    channel_id = await chosen_channel_id(services.channels, workspace_id, channel_id)
    document = await services.webhooks.set_channel(workspace_id, trigger_id, channel_id)
    if document is None:
        raise NotFound(f"webhook trigger {trigger_id} not found")
    return document


async def set_signature_scheme(
    services: WebhookTriggerServices, workspace_id: str, trigger_id: str, scheme: str
) -> dict[str, Any]:
    """Move a trigger to another signature scheme, e.g. an older trigger to the timestamped one."""
    if scheme not in SCHEMES:
        raise InvalidInput(f"signature must be one of {', '.join(SCHEMES)}", field="signature")
    document = await services.webhooks.set_signature_scheme(workspace_id, trigger_id, scheme)
    if document is None:
        raise NotFound(f"webhook trigger {trigger_id} not found")
    return document


async def rotate_webhook_trigger_secret(
    services: WebhookTriggerServices, workspace_id: str, trigger_id: str, secret: str | None = None
) -> dict[str, Any]:
    """Replace the trigger's secret; the old one stops working at once. Returns the trigger with
    the new secret, shown this once."""
    new = _new_secret(secret)
    updated = await services.webhooks.set_secret(workspace_id, trigger_id, new)
    if updated is None:
        raise NotFound(f"webhook trigger {trigger_id} not found")
    return {**updated, "secret": new}


async def delete_webhook_trigger(
    services: WebhookTriggerServices, workspace_id: str, trigger_id: str
) -> bool:
    if not await services.webhooks.delete(workspace_id, trigger_id):
        raise NotFound(f"webhook trigger {trigger_id} not found")
    return True


@dataclass
class HookResponse:
    status: int
    body: dict[str, Any] = field(default_factory=dict)


def _error(status: int, message: str, **extra: Any) -> HookResponse:
    return HookResponse(status, {"error": message, **extra})


def _idempotency_key(headers: Any, mapped: str | None) -> str | None:
    key = mapped
    if key is None:
        key = next((headers.get(h) for h in IDEMPOTENCY_HEADERS if headers.get(h)), None)
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH:
        raise PayloadError("idempotency key", f"the idempotency key must be 1-{MAX_KEY_LENGTH} characters")
    return key


def _unavailable(trigger_id: str, exc: Exception) -> HookResponse:
    log.warning("webhook %s refused, store or Redis unavailable: %s", trigger_id, exc)
    return _error(503, "the server cannot take the request now; retry later")


async def receive(services: HookReceiveServices, trigger_id: str, body: bytes, headers: Any) -> HookResponse:
    """Everything ``POST /hooks/{trigger_id}`` does, as a status code and a JSON body.

    A timestamped signature is claimed before the request is stored and given back unless the
    request was accepted, so only a replay of an accepted request is refused as one.
    """
    try:
        trigger = await services.webhooks.find(trigger_id)
    except PyMongoError as exc:
        return _unavailable(trigger_id, exc)
    if trigger is None:
        return _error(404, f"no webhook trigger {trigger_id}")
    try:
        admitted = await services.workspace_gate.admit(trigger["workspace_id"])
    except PyMongoError as exc:
        return _unavailable(trigger_id, exc)
    if admitted is None:
        log.info("webhook %s answered 410: its workspace is disabled", trigger_id)
        return _error(410, "this trigger's workspace is disabled; the request was not stored")
    with admitted:  # work of the workspace in flight until stored (a deletion waits for it)
        return await _verified(services, trigger, body, headers)


async def _verified(
    services: HookReceiveServices, trigger: dict[str, Any], body: bytes, headers: Any
) -> HookResponse:
    """Check the signature, claim it against replays and store the request."""
    trigger_id = trigger["_id"]
    verdict = verify(scheme_of(trigger), trigger["secret"], body, headers, services.clock.now().timestamp())
    if verdict.problem is not None:
        return _error(401, verdict.problem)
    claim = f"{trigger_id}:{verdict.replay_key}" if verdict.replay_key else None
    if claim is not None:
        try:
            first_use = await services.replays.claim(claim)
        except RedisError as exc:
            return _unavailable(trigger_id, exc)
        if not first_use:
            return _error(401, "this signed request was already received (a replay): sign each delivery anew")
    try:
        response = await _accept(services, trigger, body, headers)
    except PyMongoError as exc:
        response = _unavailable(trigger_id, exc)
    if claim is not None and response.status >= 300:
        await services.replays.release(claim)
    return response


async def _accept(
    services: HookReceiveServices, trigger: dict[str, Any], body: bytes, headers: Any
) -> HookResponse:
    """Map an authenticated request and store it; 202 once stored (then its actor is told)."""
    trigger_id = trigger["_id"]
    mapping = parse_mapping(trigger["mapping"])
    try:
        check_json_depth(body, services.settings.max_json_depth)
        payload = json.loads(body)
    except JsonTooDeep as exc:
        return _error(400, str(exc))
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep
        return _error(400, "the body is not JSON")
    workspace_id = trigger["workspace_id"]
    try:
        extracted = extract(mapping, payload, await services.caches.default_country_of(workspace_id))
        key = _idempotency_key(headers, extracted.idempotency_key)
    except PayloadError as exc:
        return _error(400, exc.message, path=exc.path)
    try:
        contact = await _contact_data(services, workspace_id, mapping, extracted)
    except (InvalidInput, NotFound) as exc:
        return _error(400, exc.message, **exc.details)
    flow = await services.flows.get(workspace_id, trigger["flow_id"])
    if flow is None or flow.get("status") != "active":
        state = "deleted" if flow is None else flow.get("status")
        return _error(409, f"the trigger's flow is {state}: publish it to accept requests")
    key = key or new_id("req")
    request = {
        "_id": f"{trigger_id}:{key}",
        "workspace_id": workspace_id,
        "trigger_id": trigger_id,
        "flow_id": trigger["flow_id"],
        "phone": extracted.phone,
        "trigger": extracted.variables,
        "channel_id": trigger.get("channel_id"),
        "contact": contact,
        "event_id": hook_event_id(trigger_id, key),
        "body": body.decode("utf-8", "replace"),  # as received (JSON keys may not suit a document)
        "received_at": services.clock.now(),
    }
    stored, existing = await services.hook_requests.record(request)
    if not stored and existing.get("applied"):
        return HookResponse(202, {"id": existing["_id"], "duplicate": True, "runId": existing.get("run_id")})
    _apply_later(services, existing)
    return HookResponse(202, {"id": existing["_id"], "duplicate": not stored, "phone": extracted.phone})


async def _contact_data(
    services: HookReceiveServices, workspace_id: str, mapping: WebhookMapping, extracted: Extracted
) -> dict[str, Any] | None:
    """The mapping's contact fields typed against the workspace's fields (a value that does not fit,
    or a field deleted since the trigger was made, is refused with the field and the path named)."""
    if mapping.contact is None:
        return None
    raw = {"fields": extracted.contact_fields, "tags": mapping.contact.tags}
    try:
        data = await checked_contact_data(services, workspace_id, raw, "mapping.contact")
    except (InvalidInput, NotFound) as exc:
        name = str(exc.details.get("field") or "").removeprefix("mapping.contact.fields.")
        path = extracted.contact_paths.get(name)
        if path is not None:
            exc.details["path"] = path
        raise
    return {"values": data.values, "links": data.links, "tags": list(data.tags)}


_pending: set[asyncio.Task[None]] = set()


def _apply_later(services: HookReceiveServices, request: dict[str, Any]) -> None:
    """Hand the stored request to its actor; the response does not wait for the turn."""
    task = asyncio.create_task(apply_request(services, request))
    _pending.add(task)
    task.add_done_callback(_pending.discard)


async def apply_request(services: HookApplyServices, request: dict[str, Any]) -> None:
    """Start the flow for a stored request and mark it applied (a failure is recorded, not raised);
    nothing while its workspace may not act (recovery applies it once enabled)."""
    try:
        admitted = await services.workspace_gate.admit(request["workspace_id"])
    except PyMongoError as exc:  # recovery applies it later
        log.warning("webhook request %s not applied yet: %s", request["_id"], exc)
        return
    if admitted is None:
        log.info("webhook request %s waits: its workspace may not act now", request["_id"])
        return
    with admitted:
        await _apply_admitted(services, request)


async def _apply_admitted(services: HookApplyServices, request: dict[str, Any]) -> None:
    contact = request.get("contact") or {}
    event = StartFlow(
        request["event_id"],
        request["flow_id"],
        trigger=request["trigger"],
        source="webhook",
        channel_id=request.get("channel_id"),
        contact_values=contact.get("values") or {},
        contact_links=contact.get("links") or {},
        contact_tags=tuple(contact.get("tags") or ()),
    )
    try:
        resolved = await services.directory.resolve(
            request["workspace_id"], Identities(phone=request["phone"])
        )
        assert resolved is not None  # resolve creates
        result = await services.actors.ask(resolved.key, event)
    except (InvalidInput, NotFound) as exc:  # the flow was archived or deleted meanwhile: final
        await services.hook_requests.mark_applied(request["_id"], None, exc.message)
        return
    except KonvoError as exc:  # shutting down or contended: recovery applies it later
        log.info("webhook request %s not applied yet: %s", request["_id"], exc.message)
        return
    except Exception:
        log.exception("webhook request %s not applied; recovery will retry", request["_id"])
        return
    run_id = result.run["id"] if result.run else None
    try:
        await services.hook_requests.mark_applied(request["_id"], run_id)
    except Exception:  # applied but not marked: recovery re-applies it and the actor drops the copy
        log.warning("webhook request %s applied but not marked", request["_id"], exc_info=True)
