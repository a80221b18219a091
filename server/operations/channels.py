"""A workspace's WhatsApp Business numbers (Cloud API, or a provider exposing it): connect, change,
disconnect, and choose which one sends (docs/channels.md).

Connecting a number the workspace already has updates that channel in place (same id, so its
webhook URL and its history stay), reconnecting it if it was disconnected: running the same
setup twice, or connecting a number again after a disconnect, is not an error.
"""

from __future__ import annotations

import re
import secrets
from typing import Any, Protocol

from pymongo.errors import DuplicateKeyError

from server.channels import choice
from server.channels.router import ChannelRouter
from server.channels.whatsapp.limiter import MAX_RATE
from server.egress import EgressPolicy
from server.errors import Conflict, InvalidInput, NotFound
from server.ids import new_id
from server.operations import templates
from server.operations.templates import TemplateServices
from server.store.channels import (
    CONNECTED,
    DEFAULT_API_VERSION,
    DEFAULT_BASE_URL,
    DEFAULT_THROUGHPUT,
    is_connected,
    new_channel,
)

WEBHOOK_PATH = "/webhooks/whatsapp/{channel_id}"
_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
_VERSION = re.compile(r"v\d+\.\d+")
_HEADER = re.compile(r"[A-Za-z0-9-]{1,64}")
MAX_DISPLAY_PHONE = 32


class ChannelServices(TemplateServices, Protocol):
    """Connecting and changing WhatsApp numbers: the channel router, the egress policy, and the
    template reviews a reconnection starts."""

    @property
    def channel(self) -> ChannelRouter: ...

    @property
    def egress(self) -> EgressPolicy: ...


def _required(value: Any, field: str, what: str) -> str:
    text = str(value or "").strip()
    if not text:
        raise InvalidInput(f"{what} is required", field=field)
    return text


async def _settings(services: ChannelServices, data: dict[str, Any]) -> dict[str, Any]:
    """The checked value of every setting given in ``data`` (snake_case keys; absent ones omitted)."""
    checked: dict[str, Any] = {}
    if data.get("base_url") is not None:
        base_url = str(data["base_url"]).strip().rstrip("/") or DEFAULT_BASE_URL
        if base_url != DEFAULT_BASE_URL:  # a tenant-chosen URL: the egress policy decides (and at each call)
            await services.egress.check_url(base_url, "baseUrl")
        checked["base_url"] = base_url
    if data.get("api_version") is not None:
        api_version = str(data["api_version"]).strip()
        if not _VERSION.fullmatch(api_version):
            raise InvalidInput("apiVersion looks like v23.0", field="apiVersion")
        checked["api_version"] = api_version
    if data.get("auth_header") is not None:
        auth_header = str(data["auth_header"]).strip()
        if not _HEADER.fullmatch(auth_header):
            raise InvalidInput("authHeader must be an HTTP header name", field="authHeader")
        checked["auth_header"] = auth_header
    if data.get("auth_scheme") is not None:
        checked["auth_scheme"] = str(data["auth_scheme"]).strip()
    if data.get("throughput_per_second") is not None:
        throughput = int(data["throughput_per_second"])
        if not 1 <= throughput <= MAX_RATE:
            raise InvalidInput(
                f"throughputPerSecond is 1 to {MAX_RATE} (Meta's default is 80; 1000 once upgraded)",
                field="throughputPerSecond",
            )
        checked["throughput_per_second"] = throughput
    if data.get("business_id") is not None:
        business_id = str(data["business_id"]).strip() or None
        if business_id is not None and not _ID.fullmatch(business_id):
            raise InvalidInput(f"businessId {business_id!r} is not a Graph API id", field="businessId")
        checked["business_id"] = business_id
    if data.get("display_phone") is not None:
        display = str(data["display_phone"]).strip()
        if len(display) > MAX_DISPLAY_PHONE:
            raise InvalidInput(
                f"displayPhone is at most {MAX_DISPLAY_PHONE} characters", field="displayPhone"
            )
        checked["display_phone"] = display or None
    for key, field, what in (
        ("access_token", "accessToken", "the access token"),
        ("app_secret", "appSecret", "the app secret"),
        ("verify_token", "verifyToken", "the verify token"),
    ):
        if data.get(key) is not None:
            checked[key] = _required(data[key], field, what)
    return checked


def _ids(data: dict[str, Any]) -> tuple[str, str]:
    phone_number_id = _required(data.get("phone_number_id"), "phoneNumberId", "the phone number id")
    waba_id = _required(data.get("waba_id"), "wabaId", "the WhatsApp Business Account id")
    for value, field in ((phone_number_id, "phoneNumberId"), (waba_id, "wabaId")):
        if not _ID.fullmatch(value):
            raise InvalidInput(f"{field} {value!r} is not a Graph API id", field=field)
    return phone_number_id, waba_id


async def connect_whatsapp(
    services: ChannelServices, workspace_id: str, data: dict[str, Any]
) -> dict[str, Any]:
    """Store a WhatsApp channel, or update (and reconnect) the one this number already has.

    A new channel takes webhook events once Meta has verified the callback URL
    (``webhook_verified_at``); an existing one keeps its URL, and its verification with it.
    """
    phone_number_id, waba_id = _ids(data)
    app_secret = _required(data.get("app_secret"), "appSecret", "the app secret (checks webhook signatures)")
    access_token = _required(data.get("access_token"), "accessToken", "the access token")
    settings = await _settings(services, data)
    existing = await services.channels.by_phone_number_id(workspace_id, phone_number_id)
    if existing is not None:
        return await _reconnect(services, workspace_id, existing, waba_id, settings)
    document = new_channel(
        channel_id=new_id("chn"),
        workspace_id=workspace_id,
        phone_number_id=phone_number_id,
        waba_id=waba_id,
        verify_token=str(settings.get("verify_token") or secrets.token_urlsafe(24)),
        app_secret=app_secret,
        access_token=access_token,
        display_phone=settings.get("display_phone"),
        base_url=settings.get("base_url", DEFAULT_BASE_URL),
        api_version=settings.get("api_version", DEFAULT_API_VERSION),
        auth_header=settings.get("auth_header", "Authorization"),
        auth_scheme=settings.get("auth_scheme", "Bearer"),
        throughput_per_second=settings.get("throughput_per_second", DEFAULT_THROUGHPUT),
        created_at=services.clock.now(),
        business_id=settings.get("business_id"),
    )
    try:
        await services.channels.insert(document)
    except DuplicateKeyError:  # connected concurrently by another request: that one won
        raise Conflict(
            f"phone number id {phone_number_id} was connected in this workspace at the same moment; "
            "use updateWhatsAppChannel to change it",
            field="phoneNumberId",
        ) from None
    await _channels_changed(services, workspace_id)
    return document


async def _reconnect(
    services: ChannelServices,
    workspace_id: str,
    existing: dict[str, Any],
    waba_id: str,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """``connectWhatsApp`` of a number the workspace has: its settings and secrets replaced."""
    changes: dict[str, Any] = {**settings, "waba_id": waba_id, "status": CONNECTED, "disconnected_at": None}
    changes.setdefault("verify_token", existing.get("verify_token") or secrets.token_urlsafe(24))
    updated = await services.channels.update(workspace_id, existing["_id"], changes)
    if updated is None:
        raise NotFound(f"channel {existing['_id']} not found")
    await _channels_changed(services, workspace_id)
    return updated


async def update_whatsapp_channel(
    services: ChannelServices, workspace_id: str, channel_id: str, data: dict[str, Any]
) -> dict[str, Any]:
    """Change a connected channel: rotate its token or app secret, move its base URL (within the
    egress policy), its display phone or throughput tier, or make it the default."""
    channel = await require_channel(services, workspace_id, channel_id, field="id")
    make_default = data.pop("is_default", None)
    changes = await _settings(services, data)
    if changes:
        updated = await services.channels.update(workspace_id, channel_id, changes)
        channel = updated or channel
    if make_default is True:
        await services.channels.set_default(workspace_id, channel_id)
    elif make_default is False and await services.channels.default_id(workspace_id) == channel_id:
        await services.channels.set_default(workspace_id, None)  # back to the oldest connected one
    _forget(services, workspace_id)
    return channel


async def set_default_channel(
    services: ChannelServices, workspace_id: str, channel_id: str
) -> dict[str, Any]:
    """The channel that sends whatever names no channel of its own (and runs started without one)."""
    channel = await require_channel(services, workspace_id, channel_id, field="id")
    await services.channels.set_default(workspace_id, channel_id)
    _forget(services, workspace_id)
    return channel


async def disconnect_whatsapp(services: ChannelServices, workspace_id: str, channel_id: str) -> bool:
    """Stop using a number: its secrets are dropped, its webhook answers 410, its history stays.

    Runs and conversations on it continue through the workspace's default channel (if any).
    """
    channel = await services.channels.get_in(workspace_id, channel_id)
    if channel is None:
        raise NotFound(f"WhatsApp channel {channel_id} not found", field="id")
    if not is_connected(channel):
        return True
    await services.channels.disconnect(workspace_id, channel_id, services.clock.now())
    _forget(services, workspace_id)
    return True


async def require_channel(
    services: ChannelServices, workspace_id: str, channel_id: str, field: str = "channelId"
) -> dict[str, Any]:
    return await choice.require_channel(services.channels, workspace_id, channel_id, field)


async def whatsapp_channels(
    services: ChannelServices, workspace_id: str, include_disconnected: bool = False
) -> list[dict[str, Any]]:
    return await services.channels.list(workspace_id, include_disconnected)


def _forget(services: ChannelServices, workspace_id: str) -> None:
    forget = getattr(services.channel, "forget", None)
    if forget is not None:
        forget(workspace_id)


async def _channels_changed(services: ChannelServices, workspace_id: str) -> None:
    _forget(services, workspace_id)
    # Flows published in the sandbox sent unreviewed templates: from now on Meta must approve them.
    await templates.review_sandbox_flows(services, workspace_id)
