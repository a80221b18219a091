"""Which Graph API failures to retry now, later, or never (Meta's error codes and HTTP statuses).

Source: Meta's Cloud API error-code reference. Rate limits and server trouble pass, so they are
retried with backoff; authorization problems need a person to fix the channel, so the message
waits in the outbox for recovery; Meta's "this recipient, later" codes (131048, 131049, 131056)
go back to the send policy, which retries them hours (or, for the pair rate, seconds) later;
anything about the message itself (window closed, recipient unreachable, invalid parameters,
template problems) fails the same way every time, so it is final.

What a failure says (``Failure.message``, shown on run steps and API errors) is our own text for
Meta's code, never the remote body: a tenant chooses the base URL, so the body could be anyone's.
Transport failures that certainly left nothing at the server (no connection, no free pooled
connection in time) all read the same (``UNREACHABLE``) and are retried. A send that failed after
its request was written (no answer in time, the connection dropped) may have reached Meta, which
offers no idempotency key for messages: it is not sent again (the customer must never get it
twice) and ends as ``OUTCOME_UNKNOWN``. The remote's own words go to the server log (``remote_text``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

# "unknown": a send that may have arrived; final, like "permanent", but not Meta's refusal.
Verdict = Literal["retry", "later", "permanent", "unknown"]

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
        133004,  # server temporarily unavailable
    }
)
# "This recipient, later": retrying within seconds only earns the same answer. The send policy
# retries them durably on its own schedule (server/sending/rules.py: DEFERRALS).
RECIPIENT_LATER_CODES = frozenset(
    {
        131048,  # sends from the number restricted (spam rate limit / messaging limit)
        131049,  # Meta's per-user marketing cap; marketing to US numbers
        131056,  # pair rate limit (too many messages to one recipient)
    }
)
# The channel, not the message, is wrong (token, permissions, locked account): keep for later.
LATER_CODES = frozenset({0, 3, 10, 190, 131031, 131042, 131045, 133010, 368})
LATER_CODE_RANGE = range(200, 300)  # permission errors

# Our words for Meta's codes (Meta's Cloud API error-code reference).
DESCRIPTIONS: dict[int, str] = {
    0: "authentication failed: check the access token",
    1: "Meta reported an unknown error",
    2: "the service is temporarily unavailable",
    3: "the app lacks a capability or permission for this call",
    4: "the app's request limit was reached",
    10: "permission denied: the token lacks a permission this call needs",
    17: "the request limit was reached",
    100: "a parameter is invalid, missing or misspelled",
    190: "the access token is invalid or expired",
    368: "the account is temporarily blocked for policy violations",
    80007: "the business account's rate limit was reached",
    130429: "the number's message throughput was reached",
    131000: "Meta could not process the message",
    131005: "access denied",
    131008: "a required parameter is missing",
    131009: "a parameter value is not valid",
    131016: "the service is unavailable",
    131021: "the recipient is the sending number itself",
    131026: "the message cannot be delivered to this recipient",
    131031: "the business account is locked",
    131042: "the business account has a payment problem",
    131045: "the phone number is not registered",
    131047: "more than 24 hours passed since the customer last wrote: only a template can be sent",
    131048: "sends from this number are restricted for now (spam rate limit or messaging limit)",
    131049: "Meta did not deliver this marketing message to keep engagement healthy (per-user cap)",
    131051: "this message type is not supported",
    131056: "too many messages to this recipient in a short time",
    # BSUID recipients (2026): one-tap, zero-tap and copy-code authentication templates need a phone.
    131062: "this message cannot be sent to a business-scoped user ID; it needs the customer's phone number",
    132000: "the number of parameters does not match the template",
    132001: "the template does not exist in this language or is not approved",
    132005: "the template text is too long once filled in",
    132007: "the template breaks a formatting policy",
    132012: "a parameter's format does not match the template",
    132015: "the template is paused for low quality",
    132016: "the template is disabled",
    133004: "the server is temporarily unavailable",
    133010: "the phone number is not registered on the Cloud API",
}
UNREACHABLE = "the WhatsApp API could not be reached"
OUTCOME_UNKNOWN = (
    "the WhatsApp API did not answer a send that may have reached it; not sent again, so the "
    "customer cannot get it twice (it may have been delivered)"
)
# Our own codes for sends refused before (or without) Meta's answer.
OWN_TITLES: dict[str, str] = {
    "TEMPLATE_MISSING": "the template does not exist in this workspace",
    "TEMPLATE_PAUSED": "the template is paused for low quality",
    "TEMPLATE_DISABLED": "the template is disabled",
    "TEMPLATE_NOT_APPROVED": "the template is not approved",
    "INVALID_MESSAGE": "WhatsApp would refuse this message",
    "UNREACHABLE": UNREACHABLE,
    "OUTCOME_UNKNOWN": "the send may have reached WhatsApp but its answer was lost; not sent again",
    "EGRESS_REFUSED": "the channel's base URL is not allowed by the egress policy",
}


def error_title(code: str | None) -> str | None:
    """A short title for a failure code: Meta's numeric codes and our own (``errorTitle``)."""
    if code is None:
        return None
    if code.isdigit():
        return DESCRIPTIONS.get(int(code))
    if code.startswith("HTTP_"):
        return f"the WhatsApp API answered HTTP {code.removeprefix('HTTP_')}"
    return OWN_TITLES.get(code)


@dataclass(frozen=True)
class Failure:
    verdict: Verdict
    code: str
    message: str
    retry_after: float | None = None


def meta_error(body: Any) -> dict[str, Any] | None:
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else None


def remote_text(body: Any, limit: int = 300) -> str | None:
    """Meta's own message and details, for the server log only (bounded)."""
    error = meta_error(body)
    return describe(error)[:limit] if error is not None else None


def graph_message(code: int) -> str:
    description = DESCRIPTIONS.get(code)
    return f"WhatsApp API error {code}: {description}" if description else f"WhatsApp API error {code}"


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
        message = graph_message(code)
        if code in RETRY_CODES:
            return Failure("retry", str(code), message, retry_after)
        if code in RECIPIENT_LATER_CODES:
            return Failure("later", str(code), message, retry_after)
        if code in LATER_CODES or code in LATER_CODE_RANGE:
            return Failure("later", str(code), message)
        if status >= 500:
            return Failure("retry", str(code), message, retry_after)
        return Failure("permanent", str(code), message)
    text = f"the WhatsApp API answered HTTP {status} without a Graph error"
    if status in (408, 425, 429) or status >= 500:
        return Failure("retry", f"HTTP_{status}", text, retry_after)
    if status in (401, 403, 404):  # wrong token, or a base URL / API version that is not the Graph API
        return Failure("later", f"HTTP_{status}", text)
    return Failure("permanent", f"HTTP_{status}", text)


def transport_failure(maybe_received: bool = False) -> Failure:
    """A request that got no answer. ``maybe_received`` False (nothing was written: no connection,
    no pooled connection in time): try again, one code and one text for all of them (the
    exception's own text names the target). True (it was written, then no answer in time or the
    connection dropped) for a request that must not be repeated: final, as ``OUTCOME_UNKNOWN``."""
    if maybe_received:
        return Failure("unknown", "OUTCOME_UNKNOWN", OUTCOME_UNKNOWN)
    return Failure("retry", "UNREACHABLE", UNREACHABLE)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the HTTP-date form is not used by the Graph API)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def reported_error(errors: Any) -> tuple[str | None, str | None, str | None]:
    """(code, title, detail) of the first error Meta reports in a webhook (a failed status, or an
    inbound message WhatsApp could not carry): ``title``, then ``error_data.details`` or ``message``."""
    first = next((e for e in errors or [] if isinstance(e, dict)), None)
    if first is None:
        return None, None, None
    code = str(first["code"]) if first.get("code") is not None else None
    data = first.get("error_data")
    details = data.get("details") if isinstance(data, dict) else None
    title = first.get("title") or first.get("message")
    detail = details or first.get("message") or first.get("title")
    return code, str(title) if title else error_title(code), str(detail) if detail else None
