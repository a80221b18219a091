"""Replaying Meta's webhook payloads (tests/fixtures/whatsapp_webhooks) signed, over real HTTP."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import httpx

from server.channels.whatsapp.signature import HEADER, signature_for

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "whatsapp_webhooks"

APP_SECRET = "test-app-secret"
VERIFY_TOKEN = "test-verify-token"
CUSTOMER = "+16505551234"  # the ``from`` of every fixture
CUSTOMER_NAME = "Sheena Nelson"


def payload(name: str) -> dict[str, Any]:
    """A fresh copy of fixture ``name`` (without ``.json``)."""
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def value_of(body: dict[str, Any]) -> dict[str, Any]:
    """The ``value`` of the first change: where a test replaces ids."""
    return body["entry"][0]["changes"][0]["value"]


def message_of(body: dict[str, Any]) -> dict[str, Any]:
    return value_of(body)["messages"][0]


def status_payload(name: str, wamid: str) -> dict[str, Any]:
    """Status fixture ``name`` about our message known to the provider as ``wamid``."""
    body = payload(name)
    value_of(body)["statuses"][0]["id"] = wamid
    return body


def with_wamid(name: str, wamid: str) -> dict[str, Any]:
    body = copy.deepcopy(payload(name))
    message_of(body)["id"] = wamid
    return body


class WebhookClient:
    """POSTs bodies to ``/webhooks/whatsapp/{channel}`` signed like Meta signs them."""

    def __init__(self, http: httpx.AsyncClient, channel_id: str, app_secret: str = APP_SECRET) -> None:
        self.http = http
        self.channel_id = channel_id
        self.app_secret = app_secret

    @property
    def path(self) -> str:
        return f"/webhooks/whatsapp/{self.channel_id}"

    async def post(self, body: dict[str, Any] | str, *, secret: str | None = None) -> httpx.Response:
        data = json.dumps(payload(body) if isinstance(body, str) else body).encode()
        return await self.post_raw(data, signature=signature_for(data, secret or self.app_secret))

    async def post_raw(self, data: bytes, *, signature: str | None) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if signature is not None:
            headers[HEADER] = signature
        return await self.http.post(self.path, content=data, headers=headers)

    async def verify(self, **params: str) -> httpx.Response:
        return await self.http.get(self.path, params=params)

    async def handshake(
        self, verify_token: str = VERIFY_TOKEN, challenge: str = "1158201444"
    ) -> httpx.Response:
        """Meta's subscription GET with the channel's verify token: the channel then takes events."""
        return await self.verify(
            **{"hub.mode": "subscribe", "hub.verify_token": verify_token, "hub.challenge": challenge}
        )
