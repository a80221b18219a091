"""The Channel protocol: how an outbound message leaves the product."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

PAIR_RATE = "PAIR_RATE"  # our own pacing of one recipient (channels/whatsapp/pair_rate.py)
TYPING = "typing"  # the outbox entry of a read receipt with the typing indicator


@dataclass(frozen=True)
class SendResult:
    """``ok`` False with ``retry`` True means try again later; False/False is final for the message."""

    ok: bool
    provider_id: str | None = None
    error_code: str | None = None
    error: str | None = None
    retry: bool = False
    retry_after: float | None = None  # seconds the provider (or our pacing) asked to wait


class Channel(Protocol):
    name: str

    async def send(self, workspace_id: str, message: dict[str, Any], fresh: bool = False) -> SendResult:
        """Send one outbox message. ``fresh``: it was queued by the turn just committed, so it
        cannot have been sent before and the channel may skip its "already sent?" lookup."""
        ...
