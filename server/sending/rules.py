"""What may not be sent at all, and how long to wait after Meta says "not now".

Refusals (checked just before a message is handed to the channel, on the contact as it is then,
so a message that waited for quiet hours or a retry is judged again):

- ``MARKETING_TO_US``: Meta does not deliver marketing templates to US phone numbers (since
  2025-04-01; it answers 131049). Sending would be charged nothing and reach no one, so the
  message is refused with the reason instead (``conformance/whatsapp-2026.md``, "Messaging
  limits, pricing and delivery rules").
- ``NO_OPT_IN``: a marketing template to a contact without marketing consent (it may have opted
  out while the message waited).
- ``WINDOW_CLOSED``: a message that is not a template, while the 24-hour window is closed (it may
  have closed while the message waited).

Deferrals (``DEFERRALS``): Meta's codes that mean "this recipient, later", retried durably
(the message waits in the outbox with a timer, surviving restarts) on a fixed schedule, then
given up as a failure with the code:

- 131049, the per-user marketing cap ("healthy ecosystem"): Meta's per-user marketing limits
  page says not to resend at once but "in increasingly larger time increments"; BSPs that
  mirror it say to wait at least 24 hours. Retried after 24 h and then 48 h.
- 131048, sends restricted for the number (spam rate limit; BSPs also report it once a portfolio
  keeps sending past its messaging limit): after 6 h, 12 h, 24 h.
- 131056, pair rate (one business number to one user, about one message every 6 s with bursts
  to 45): Meta's throughput page says to retry after 4^X seconds, X the failures so far
  (1, 4, 16, 64, 256 s). Nothing else goes to that user meanwhile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from server.channels.base import PAIR_RATE, TYPING
from server.sending.zones import recipient_country
from server.window import window_open

MARKETING_TO_US = "MARKETING_TO_US"
NO_OPT_IN = "NO_OPT_IN"
WINDOW_CLOSED = "WINDOW_CLOSED"


@dataclass(frozen=True)
class Refusal:
    code: str
    reason: str


@dataclass(frozen=True)
class Backoff:
    """Waits before each retry; after the last one the message fails with the code."""

    waits: tuple[timedelta, ...]
    whole_contact: bool = False  # nothing else may go to this recipient meanwhile
    what: str = ""


DEFERRALS: dict[str, Backoff] = {
    "131049": Backoff(
        (timedelta(hours=24), timedelta(hours=48)),
        what="Meta's per-user marketing cap (131049): retried a day later, then two",
    ),
    "131048": Backoff(
        (timedelta(hours=6), timedelta(hours=12), timedelta(hours=24)),
        what="sends from this number are restricted (131048): retried hours later",
    ),
    "131056": Backoff(
        tuple(timedelta(seconds=4**x) for x in range(5)),
        whole_contact=True,
        what="too many messages to this customer in a short time (131056): paced",
    ),
}


@dataclass(frozen=True)
class Deferral:
    """Retry the message at ``until``; ``attempt`` is the number of the retry (1 = first)."""

    until: datetime
    code: str
    reason: str
    attempt: int
    whole_contact: bool = False
    counted: bool = True  # a pacing wait of our own does not use up a retry


def refusal(contact: Mapping[str, Any], message: dict[str, Any], now: datetime) -> Refusal | None:
    """Why ``message`` must not be sent to ``contact`` now, or None."""
    kind = message.get("kind")
    if kind == TYPING:
        return None
    if kind == "template":
        if message.get("template_category") != "MARKETING":
            return None
        if recipient_country(message.get("to")) == "US":
            return Refusal(
                MARKETING_TO_US,
                "Meta does not deliver marketing templates to US phone numbers (since 2025-04-01); "
                "use a utility template, or reach the customer inside the 24-hour window",
            )
        if not contact.get("opted_in"):
            return Refusal(
                NO_OPT_IN, "a MARKETING template needs the contact's marketing opt-in; it has none now"
            )
        return None
    if not window_open(contact.get("last_inbound_at"), now):
        return Refusal(
            WINDOW_CLOSED,
            "the 24-hour customer service window closed while the message waited; only a template "
            "can open the conversation",
        )
    return None


def deferral(
    code: str | None, attempts: int, now: datetime, retry_after: float | None = None
) -> Deferral | None:
    """When to retry after ``code``, given ``attempts`` retries already made; None: give up
    (or ``code`` is not one to defer)."""
    if code == PAIR_RATE:
        wait = timedelta(seconds=max(retry_after or 0.0, 1.0))
        return Deferral(
            now + wait, code, "paced: this customer got many messages just now", attempts, True, False
        )
    backoff = DEFERRALS.get(code or "")
    if backoff is None or attempts >= len(backoff.waits):
        return None
    wait = backoff.waits[attempts]
    if retry_after:
        wait = max(wait, timedelta(seconds=retry_after))
    return Deferral(now + wait, str(code), backoff.what, attempts + 1, backoff.whole_contact)


def deferrable(code: str | None) -> bool:
    """Whether ``code`` is one Meta sends for "this recipient, later" (or our own pacing)."""
    return code == PAIR_RATE or (code or "") in DEFERRALS
