"""The Graph API over HTTP: one keep-alive ``httpx.AsyncClient`` per process, retries with backoff.

Base URL, API version and the auth header/scheme come from the channel document, so a provider
exposing the same API under another host and key header works by configuration. Every request
goes through the egress policy (``server/egress.py``): the tenant chose that base URL, and
``paging.next`` is followed only within its origin (the token goes along). Message sends take a
throughput slot before *every* attempt (retries included) so retrying never pushes the number
over its limit. A send is repeated only when its request certainly never reached the server:
Meta has no idempotency key for messages, so one that may have arrived (written, then no answer in
time or a dropped connection) is never sent again and ends as ``OUTCOME_UNKNOWN``.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import httpx

from server.channels.whatsapp.errors import (
    Failure,
    classify,
    parse_retry_after,
    remote_text,
    transport_failure,
)
from server.channels.whatsapp.limiter import ThroughputLimiter
from server.clock import SystemTiming, Timing
from server.egress import EgressClient, EgressPolicy, never_sent, printable_origin, same_origin
from server.errors import EgressRefused
from server.ids import scoped_id

log = logging.getLogger(__name__)

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
    retry_after: float | None = None  # what the server asked (Retry-After), when it asked


@dataclass
class GraphClient:
    limiter: ThroughputLimiter | None
    egress: EgressPolicy
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    # The retries' delays and their total budget (a request's own timeout is httpx's, real time).
    timing: Timing = field(default_factory=SystemTiming)
    _http: EgressClient | None = None

    def http(self) -> EgressClient:
        if self._http is None:
            self._http = EgressClient(
                self.egress,
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
        return await self._call(channel, "POST", url, body, throttle=True, repeatable=False)

    async def create_template(self, channel: dict[str, Any], body: dict[str, Any]) -> ApiResult:
        return await self._call(channel, "POST", _url(channel, channel["waba_id"], "message_templates"), body)

    async def edit_template(self, channel: dict[str, Any], meta_id: str, body: dict[str, Any]) -> ApiResult:
        """POST ``/{version}/{template-id}``: fix a rejected template and send it back to review."""
        return await self._call(channel, "POST", _url(channel, meta_id), body)

    async def list_templates(self, channel: dict[str, Any], name: str | None = None) -> ApiResult:
        """Every template of the WABA (following ``paging.next`` within the base URL's origin),
        optionally one name. A page elsewhere fails the whole list: nothing half-read is used."""
        first = _url(channel, channel["waba_id"], "message_templates")
        url: str | None = first
        params: dict[str, str] | None = {"name": name} if name else None
        data: list[Any] = []
        attempts = 0
        seen: set[str] = set()
        while url:
            seen.add(url)
            result = await self._call(channel, "GET", url, None, params=params)
            attempts += result.attempts
            if not result.ok:
                return result
            data += (result.body or {}).get("data") or []
            following = ((result.body or {}).get("paging") or {}).get("next")
            url, params = (urljoin(url, str(following)), None) if following else (None, None)
            if url in seen:
                url = None
            elif url is not None and not _same_origin(url, first):
                return _refused(EgressRefused("paging.next to another origin"), attempts)
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
        repeatable: bool = True,
    ) -> ApiResult:
        """``repeatable`` False: a request that must not reach the server twice (a message to a
        customer) is retried only after failures that certainly left nothing there."""
        policy = self.policy
        started = self.timing.monotonic()
        failure: Failure | None = None
        remote = ""
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
            except EgressRefused as exc:
                return _refused(exc, attempt)
            except httpx.TransportError as exc:
                failure = transport_failure(maybe_received=not repeatable and not never_sent(exc))
                remote = type(exc).__name__
            else:
                parsed = _json(response)
                if 200 <= response.status_code < 300:
                    return ApiResult(ok=True, body=parsed, attempts=attempt)
                failure = classify(
                    response.status_code, parsed, parse_retry_after(response.headers.get("retry-after"))
                )
                remote = f"HTTP {response.status_code} {remote_text(parsed) or ''}".strip()
            if failure.verdict in ("permanent", "unknown"):
                _log_failure(method, url, failure, remote)
                return ApiResult(False, error_code=failure.code, error=failure.message, attempts=attempt)
            if failure.verdict == "later" or attempt >= policy.attempts:
                break
            delay = policy.delay(attempt, failure.retry_after)
            if self.timing.monotonic() - started + delay > policy.max_total_seconds:
                break
            await self.timing.sleep(delay)
        assert failure is not None
        _log_failure(method, url, failure, remote)
        return ApiResult(
            False,
            error_code=failure.code,
            # No attempt count here: how many fit in the time budget tells a hanging port from a closed one.
            error=f"{failure.message} (gave up for now; will try again later)",
            retry=True,
            attempts=attempt,
            retry_after=failure.retry_after,
        )


def _refused(exc: EgressRefused, attempts: int) -> ApiResult:
    """A URL the egress policy refused: final, and said in its fixed words."""
    return ApiResult(False, error_code=exc.code, error=exc.message, attempts=attempts)


def _same_origin(url: str, other: str) -> bool:
    try:
        return same_origin(url, other)
    except (httpx.InvalidURL, ValueError):
        return False


def _log_failure(method: str, url: str, failure: Failure, remote: str) -> None:
    """What the remote said goes to the operator's log (never to the tenant); no path or query."""
    try:
        where = printable_origin(httpx.URL(url))
    except (httpx.InvalidURL, ValueError):
        where = "?"
    log.info("Graph API %s %s failed (%s, %s): %s", method, where, failure.code, failure.verdict, remote)


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
