"""Klaviyo's profile API: create or update a profile's properties by phone number.

Follows the published API (revision 2026-07-15; see shared/conformance/klaviyo.md):
``POST {base}/api/profile-import`` with a JSON:API body, the private key in
``Authorization: Klaviyo-API-Key``, the ``revision`` header, and retries on 429 (honouring
``Retry-After``) and 5xx with exponential backoff. The base URL is a setting so tests (and
proxies) can point it elsewhere; every request passes the egress policy (``server/egress.py``).
Errors say the status in our words; Klaviyo's own text goes to the server log only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from server.egress import EgressClient, EgressPolicy, printable_origin
from server.errors import EgressRefused

log = logging.getLogger(__name__)
REVISION = "2026-07-15"
DEFAULT_BASE_URL = "https://a.klaviyo.com"
PROFILE_IMPORT = "/api/profile-import"
MEDIA_TYPE = "application/vnd.api+json"
MAX_PAYLOAD = 100 * 1024  # Klaviyo refuses bodies over 100 KB
# Key or scope problems can be fixed by the workspace, so those are retried later too.
_RETRY_LATER = (401, 403)


@dataclass(frozen=True)
class KlaviyoSettings:
    private_key: str
    base_url: str = DEFAULT_BASE_URL


class KlaviyoError(Exception):
    """A profile update that did not go through; ``retryable`` says whether trying later may help."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        retryable: bool = True,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after  # seconds Klaviyo asked us to wait (429), when over our cap


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def profile_import_body(phone: str, properties: dict[str, Any]) -> bytes:
    """The JSON:API document: the profile found by ``phone_number``, custom ``properties`` set."""
    document = {"data": {"type": "profile", "attributes": {"phone_number": phone, "properties": properties}}}
    body = json.dumps(document, default=_json_value, ensure_ascii=False).encode()
    if len(body) > MAX_PAYLOAD:
        raise KlaviyoError(
            f"profile update of {len(body)} bytes is over Klaviyo's 100 KB limit", retryable=False
        )
    return body


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _error_text(response: httpx.Response, limit: int = 300) -> str:
    """Klaviyo's first error (``{"errors": [{"title", "detail"}]}``), else the status line: for the log."""
    try:
        errors = response.json().get("errors") or []
        first = errors[0]
        return str(first.get("detail") or first.get("title") or first.get("code"))[:limit]
    except Exception:
        return response.reason_phrase or "error"


class KlaviyoClient:
    """Sends profile imports with bounded in-call retries; longer retries are the sync's job."""

    def __init__(
        self,
        egress: EgressPolicy,
        attempts: int = 4,
        backoff: float = 0.5,
        max_wait: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._http = EgressClient(egress, timeout=httpx.Timeout(10.0))
        self.attempts = attempts
        self.backoff = backoff
        self.max_wait = max_wait
        self._sleep = sleep

    async def aclose(self) -> None:
        await self._http.aclose()

    async def import_profile(self, settings: KlaviyoSettings, phone: str, properties: dict[str, Any]) -> int:
        """Create or update the profile of ``phone``; returns Klaviyo's status (201 or 200)."""
        body = profile_import_body(phone, properties)
        url = settings.base_url.rstrip("/") + PROFILE_IMPORT
        headers = {
            "Authorization": f"Klaviyo-API-Key {settings.private_key}",
            "revision": REVISION,
            "Content-Type": MEDIA_TYPE,
            "Accept": MEDIA_TYPE,
        }
        last = "no attempt made"
        for attempt in range(self.attempts):
            wait = self.backoff * (2**attempt) * (1 + random.random() / 4)
            try:
                response = await self._http.request("POST", url, content=body, headers=headers)
            except EgressRefused as exc:
                raise KlaviyoError(exc.message, retryable=False) from None
            except httpx.TransportError as exc:
                last = "Klaviyo could not be reached"
                log.info("Klaviyo %s unreachable: %s", printable_origin(httpx.URL(url)), type(exc).__name__)
            else:
                if response.status_code in (200, 201):
                    return response.status_code
                last = f"Klaviyo answered {response.status_code}"
                log.info("Klaviyo answered %s: %s", response.status_code, _error_text(response))
                if response.status_code == 429:
                    asked = _retry_after(response)
                    if asked is not None and asked > self.max_wait:
                        raise KlaviyoError(last, 429, retryable=True, retry_after=asked)
                    wait = asked if asked is not None else wait
                elif response.status_code < 500:
                    retryable = response.status_code in _RETRY_LATER
                    raise KlaviyoError(last, response.status_code, retryable=retryable)
            if attempt + 1 < self.attempts:
                await self._sleep(min(wait, self.max_wait))
        raise KlaviyoError(last, retryable=True)
