"""The Graph API over HTTP: one keep-alive ``httpx.AsyncClient`` per process, retries with backoff.

Base URL, API version and the auth header/scheme come from the channel document, so a provider
exposing the same API under another host and key header works by configuration. Message sends
take a throughput slot before *every* attempt (retries included) so retrying never pushes the
number over its limit.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from server.channels.whatsapp.errors import Failure, classify, parse_retry_after, transport_failure
from server.channels.whatsapp.limiter import ThroughputLimiter
from server.ids import scoped_id

USER_AGENT = "konvo-flows/0.1.0"


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded attempts and total time; tests shrink the delays to milliseconds."""

    attempts: int = 6
    base_seconds: float = 0.5
    max_delay_seconds: float = 20.0
    max_total_seconds: float = 60.0
    timeout_seconds: float = 15.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter (half fixed, half random), at least ``Retry-After``."""
        ceiling = min(self.max_delay_seconds, self.base_seconds * 2 ** (attempt - 1))
        backoff = ceiling / 2 + random.uniform(0, ceiling / 2)  # jitter, not crypto
        return max(backoff, retry_after or 0.0)


@dataclass(frozen=True)
class ApiResult:
    """A Graph API call's outcome: ``body`` on success, else the failure and whether to retry later."""

    ok: bool
    body: Any = None
    error_code: str | None = None
    error: str | None = None
    retry: bool = False
    attempts: int = 0


@dataclass
class GraphClient:
    limiter: ThroughputLimiter | None
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    _http: httpx.AsyncClient | None = None

    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(
                    self.policy.timeout_seconds, connect=min(5.0, self.policy.timeout_seconds)
                ),
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
                headers={"User-Agent": USER_AGENT},
            )
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # --- operations -------------------------------------------------------------------------

    async def send_message(self, channel: dict[str, Any], body: dict[str, Any]) -> ApiResult:
        """POST ``/{version}/{phone-number-id}/messages`` under the number's throughput limit."""
        url = _url(channel, channel["phone_number_id"], "messages")
        return await self._call(channel, "POST", url, body, throttle=True)

    async def create_template(self, channel: dict[str, Any], body: dict[str, Any]) -> ApiResult:
        return await self._call(channel, "POST", _url(channel, channel["waba_id"], "message_templates"), body)

    async def edit_template(self, channel: dict[str, Any], meta_id: str, body: dict[str, Any]) -> ApiResult:
        """POST ``/{version}/{template-id}``: fix a rejected template and send it back to review."""
        return await self._call(channel, "POST", _url(channel, meta_id), body)

    async def list_templates(self, channel: dict[str, Any], name: str | None = None) -> ApiResult:
        """Every template of the WABA (following ``paging.next``), optionally one name."""
        url: str | None = _url(channel, channel["waba_id"], "message_templates")
        params: dict[str, str] | None = {"name": name} if name else None
        data: list[Any] = []
        attempts = 0
        while url:
            result = await self._call(channel, "GET", url, None, params=params)
            attempts += result.attempts
            if not result.ok:
                return result
            data += (result.body or {}).get("data") or []
            following = ((result.body or {}).get("paging") or {}).get("next")
            url, params = (following, None) if following and following != url else (None, None)
        return ApiResult(ok=True, body={"data": data}, attempts=attempts)

    # --- the retry loop ---------------------------------------------------------------------

    async def _call(
        self,
        channel: dict[str, Any],
        method: str,
        url: str,
        body: dict[str, Any] | None,
        *,
        params: dict[str, str] | None = None,
        throttle: bool = False,
    ) -> ApiResult:
        policy = self.policy
        started = time.monotonic()
        failure: Failure | None = None
        attempt = 0
        while attempt < policy.attempts:
            attempt += 1
            if throttle and self.limiter is not None:
                # Keyed by workspace too: a number id is unique within a workspace only, so another
                # tenant naming the same id must not share (and use up) this number's schedule.
                number = scoped_id(channel["workspace_id"], channel["phone_number_id"])
                await self.limiter.acquire(number, channel.get("throughput_per_second"))
            try:
                response = await self.http().request(
                    method,
                    url,
                    json=body,
                    params=params,
                    headers=_auth(channel),
                    timeout=policy.timeout_seconds,
                )
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                failure = transport_failure(exc)
            else:
                parsed = _json(response)
                if 200 <= response.status_code < 300:
                    return ApiResult(ok=True, body=parsed, attempts=attempt)
                failure = classify(
                    response.status_code, parsed, parse_retry_after(response.headers.get("retry-after"))
                )
            if failure.verdict == "permanent":
                return ApiResult(False, error_code=failure.code, error=failure.message, attempts=attempt)
            if failure.verdict == "later" or attempt >= policy.attempts:
                break
            delay = policy.delay(attempt, failure.retry_after)
            if time.monotonic() - started + delay > policy.max_total_seconds:
                break
            await asyncio.sleep(delay)
        assert failure is not None
        return ApiResult(
            False,
            error_code=failure.code,
            error=f"{failure.message} (gave up for now after {attempt} attempt(s))",
            retry=True,
            attempts=attempt,
        )


def _url(channel: dict[str, Any], owner: str, edge: str = "") -> str:
    base = str(channel.get("base_url") or "https://graph.facebook.com").rstrip("/")
    path = f"{base}/{channel.get('api_version') or 'v23.0'}/{owner}"
    return f"{path}/{edge}" if edge else path


def _auth(channel: dict[str, Any]) -> dict[str, str]:
    scheme = channel.get("auth_scheme")
    token = str(channel.get("access_token") or "")
    return {str(channel.get("auth_header") or "Authorization"): f"{scheme} {token}" if scheme else token}


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
