"""Connecting a workspace's WhatsApp Business number (Cloud API, or a provider exposing it)."""

from __future__ import annotations

import re
import secrets
from typing import Any

from pymongo.errors import DuplicateKeyError

from server.channels.whatsapp.limiter import MAX_RATE
from server.errors import Conflict, InvalidInput
from server.ids import new_id
from server.operations import templates
from server.runtime import Runtime
from server.store.channels import DEFAULT_API_VERSION, DEFAULT_BASE_URL, DEFAULT_THROUGHPUT, new_channel

WEBHOOK_PATH = "/webhooks/whatsapp/{channel_id}"
_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
_VERSION = re.compile(r"v\d+\.\d+")
_HEADER = re.compile(r"[A-Za-z0-9-]{1,64}")


def _required(value: Any, field: str, what: str) -> str:
    text = str(value or "").strip()
    if not text:
        raise InvalidInput(f"{what} is required", field=field)
    return text


async def connect_whatsapp(runtime: Runtime, workspace_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """Store a WhatsApp channel; its outbound sends and template reviews go through it from now on.

    Its webhook takes events once Meta has verified the callback URL (``webhook_verified_at``).
    """
    phone_number_id = _required(data.get("phone_number_id"), "phoneNumberId", "the phone number id")
    waba_id = _required(data.get("waba_id"), "wabaId", "the WhatsApp Business Account id")
    for value, field in ((phone_number_id, "phoneNumberId"), (waba_id, "wabaId")):
        if not _ID.fullmatch(value):
            raise InvalidInput(f"{field} {value!r} is not a Graph API id", field=field)
    base_url = str(data.get("base_url") or DEFAULT_BASE_URL).strip().rstrip("/")
    if (
        base_url != DEFAULT_BASE_URL
    ):  # a tenant-chosen URL: the egress policy decides (and again at each call)
        await runtime.egress.check_url(base_url, "baseUrl")
    api_version = str(data.get("api_version") or DEFAULT_API_VERSION).strip()
    if not _VERSION.fullmatch(api_version):
        raise InvalidInput("apiVersion looks like v23.0", field="apiVersion")
    auth_header = str(data.get("auth_header") or "Authorization").strip()
    if not _HEADER.fullmatch(auth_header):
        raise InvalidInput("authHeader must be an HTTP header name", field="authHeader")
    throughput = int(data.get("throughput_per_second") or DEFAULT_THROUGHPUT)
    if not 1 <= throughput <= MAX_RATE:
        raise InvalidInput(
            f"throughputPerSecond is 1 to {MAX_RATE} (Meta's default is 80)", field="throughputPerSecond"
        )
    business_id = str(data.get("business_id") or "").strip() or None
    if business_id is not None and not _ID.fullmatch(business_id):
        raise InvalidInput(f"businessId {business_id!r} is not a Graph API id", field="businessId")
    scheme = data.get("auth_scheme")
    document = new_channel(
        channel_id=new_id("chn"),
        workspace_id=workspace_id,
        phone_number_id=phone_number_id,
        waba_id=waba_id,
        verify_token=str(data.get("verify_token") or secrets.token_urlsafe(24)),
        app_secret=_required(
            data.get("app_secret"), "appSecret", "the app secret (checks webhook signatures)"
        ),
        access_token=_required(data.get("access_token"), "accessToken", "the access token"),
        display_phone=data.get("display_phone"),
        base_url=base_url,
        api_version=api_version,
        auth_header=auth_header,
        auth_scheme="Bearer" if scheme is None else str(scheme).strip(),
        throughput_per_second=throughput,
        created_at=runtime.clock.now(),
        business_id=business_id,
    )
    try:
        await runtime.channels.insert(document)
    except DuplicateKeyError:  # unique within the workspace: the CONFLICT names this tenant's own channel
        existing = await runtime.channels.by_phone_number_id(workspace_id, phone_number_id)
        which = f" (channel {existing['_id']})" if existing is not None else ""
        raise Conflict(
            f"phone number id {phone_number_id} is already connected in this workspace{which}",
            field="phoneNumberId",
        ) from None
    forget = getattr(runtime.channel, "forget", None)
    if forget is not None:
        forget(workspace_id)
    # Flows published in the sandbox sent unreviewed templates: from now on Meta must approve them.
    await templates.review_sandbox_flows(runtime, workspace_id)
    return document


async def whatsapp_channels(runtime: Runtime, workspace_id: str) -> list[dict[str, Any]]:
    channel = await runtime.channels.for_workspace(workspace_id)
    return [channel] if channel else []
