"""Which Graph API failures to retry now, later, or never (Meta's error codes and HTTP statuses).

Source: Meta's Cloud API error-code reference. Rate limits and server trouble pass, so they are
retried with backoff; authorization problems need a person to fix the channel, so the message
waits in the outbox for recovery; anything about the message itself (window closed, recipient
unreachable, invalid parameters, template problems) fails the same way every time, so it is final.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Verdict = Literal["retry", "later", "permanent"]

# Throttling and transient server errors: retry with backoff.
RETRY_CODES = frozenset(
    {
        1,  # API unknown
        2,  # API service temporarily unavailable
        4,  # application request limit reached
        17,  # user request limit reached
        32,  # page request limit
        613,  # calls within one hour exceeded
        80007,  # WABA rate limit
        130429,  # throughput (messages per second) reached
        131000,  # something went wrong
        131016,  # service unavailable
        131056,  # pair rate limit (too many messages to one recipient)
        133004,  # server temporarily unavailable
    }
)
# The channel, not the message, is wrong (token, permissions, locked account): keep for later.
LATER_CODES = frozenset({0, 3, 10, 190, 131031, 131042, 131045, 133010, 368})
LATER_CODE_RANGE = range(200, 300)  # permission errors


@dataclass(frozen=True)
class Failure:
    verdict: Verdict
    code: str
    message: str
    retry_after: float | None = None


def meta_error(body: Any) -> dict[str, Any] | None:
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else None


def describe(error: dict[str, Any]) -> str:
    """Meta's message plus ``error_data.details`` (the part that says what to do)."""
    message = str(error.get("message") or "error")
    details = (
        (error.get("error_data") or {}).get("details") if isinstance(error.get("error_data"), dict) else None
    )
    return f"{message}: {details}" if details and details not in message else message


def classify(status: int, body: Any, retry_after: float | None = None) -> Failure:
    """What to do about a non-2xx answer."""
    error = meta_error(body)
    if error is not None and isinstance(error.get("code"), int):
        code = int(error["code"])
        message = describe(error)
        if code in RETRY_CODES:
            return Failure("retry", str(code), message, retry_after)
        if code in LATER_CODES or code in LATER_CODE_RANGE:
            return Failure("later", str(code), message)
        if status >= 500:
            return Failure("retry", str(code), message, retry_after)
        return Failure("permanent", str(code), message)
    text = f"HTTP {status} without a Graph error body"
    if status in (408, 425, 429) or status >= 500:
        return Failure("retry", f"HTTP_{status}", text, retry_after)
    if status in (401, 403, 404):  # wrong token, or a base URL / API version that is not the Graph API
        return Failure("later", f"HTTP_{status}", text)
    return Failure("permanent", f"HTTP_{status}", text)


def transport_failure(exc: Exception) -> Failure:
    """Timeouts and dropped connections: the request may not have arrived, so try again."""
    kind = "TIMEOUT" if "Timeout" in type(exc).__name__ else "NETWORK"
    return Failure("retry", kind, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the HTTP-date form is not used by the Graph API)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
