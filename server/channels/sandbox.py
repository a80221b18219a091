"""The sandbox channel: WhatsApp without Meta. Outbound messages are recorded for people and tests."""

from __future__ import annotations

from typing import Any

from server.channels.base import TYPING, SendResult
from server.clock import Clock
from server.identity import message_address
from server.store.messages import MessageRepository

CHANNEL = "sandbox"


class SandboxChannel:
    name = CHANNEL

    def __init__(self, messages: MessageRepository, clock: Clock) -> None:
        self._messages = messages
        self._clock = clock

    async def send(self, workspace_id: str, message: dict[str, Any], fresh: bool = False) -> SendResult:
        """Record the message; redelivery of the same outbox id is recorded once. A read receipt
        (typing indicator) has nothing to show here: the sandbox customer sees the answer."""
        if message.get("kind") == TYPING:
            return SendResult(ok=True)
        record = {k: v for k, v in message.items() if k not in ("id", "to")}
        await self._messages.record_outbound(
            {
                **record,
                "_id": message["id"],
                "workspace_id": workspace_id,
                **message_address(message),
                "channel": CHANNEL,
                "status": "sent",
                "at": self._clock.now(),
            }
        )
        return SendResult(ok=True, provider_id=message["id"])
