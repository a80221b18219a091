"""The WhatsApp Cloud API channel: an outbox message becomes one Graph API send.

Order of checks: already sent (a redelivery after a crash must not send twice) -> template
usable (PAUSED/DISABLED/unapproved templates are refused here, not by Meta; read from the
process's short template cache, which a template write in this process clears at once, so a pause
learnt by another process reaches this one's sends within the cache's 5 s, and Meta's 132015 /
132016 in the meantime are mirrored as below) -> payload valid ->
the customer's pair rate (``pair_rate.py``: a message that would go over it is handed back to the
send policy to hold) -> throughput slot + request with retries (``GraphClient``). A read receipt
with the typing indicator (kind ``typing``) is sent as it is and recorded nowhere. A template
sent while the window is closed counts against the number's portfolio messaging limit
(``business_id``; ``messaging_reach``). On Meta's 200 the message is recorded
as ``accepted`` with the wamid as ``provider_id``; Meta's own ``sent``/``delivered``/``read``
arrive later by webhook.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Protocol

from server.channels.base import PAIR_RATE, TYPING, SendResult
from server.channels.whatsapp.client import GraphClient
from server.channels.whatsapp.costs import estimate
from server.channels.whatsapp.pair_rate import PairPacer
from server.channels.whatsapp.payloads import PayloadError, build
from server.channels.whatsapp.receipts import typing_receipt
from server.channels.whatsapp.template_message import SENDABLE_TEMPLATE_STATUSES
from server.clock import Clock
from server.identity import message_address
from server.ids import ContactKey, scoped_id
from server.store.catalog import TemplateRepository
from server.store.contacts import ContactRepository
from server.store.messages import MessageRepository
from server.window import window_open

log = logging.getLogger(__name__)


class TemplateCache(Protocol):
    """Templates as a short per-process cache holds them (``WorkspaceCaches.template_of``)."""

    async def __call__(self, workspace_id: str, name: str, language: str | None) -> dict[str, Any] | None: ...


class ReachLedger(Protocol):
    """Who a portfolio reached outside the window, when (``store.broadcasts.MessagingLimitRepository``)."""

    async def record(
        self, workspace_id: str, phones: list[str], at: datetime, portfolio: str | None = None
    ) -> None: ...


CHANNEL = "whatsapp"
# Meta's codes that mean the template itself can no longer be sent: mirror them on our template.
TEMPLATE_STATE_CODES = {"132015": "PAUSED", "132016": "DISABLED"}


class WhatsAppChannel:
    name = CHANNEL

    def __init__(
        self,
        client: GraphClient,
        messages: MessageRepository,
        templates: TemplateRepository,
        contacts: ContactRepository,
        clock: Clock,
        pacer: PairPacer | None = None,
        reach: ReachLedger | None = None,
        cached_template: TemplateCache | None = None,
    ) -> None:
        self.client = client
        self._messages = messages
        self._templates = templates
        self._contacts = contacts
        self._clock = clock
        # Send policy at the channel (docs/sending.md): one customer paced (Meta's pair rate), and
        # who a template reached outside the window counted against the number's portfolio.
        self.pacer = pacer
        self._reach = reach
        # Read before the store: a broadcast sends one template thousands of times (issue 19).
        self._cached_template = cached_template

    async def send(
        self, workspace_id: str, message: dict[str, Any], channel: dict[str, Any], fresh: bool = False
    ) -> SendResult:
        if message.get("kind") == TYPING:
            return await self._typing(channel, message)
        if not fresh:  # a redelivery after a crash: it may have reached Meta already
            existing = await self._messages.get(message["id"])
            if existing is not None and existing.get("provider_id"):
                return SendResult(ok=True, provider_id=existing["provider_id"])
        template: dict[str, Any] | None = None
        if message.get("kind") == "template":
            template, refusal = await self._usable_template(workspace_id, message)
            if refusal is not None:
                return refusal
        try:
            body = build(message, template)
        except PayloadError as exc:
            return SendResult(ok=False, retry=False, error_code=exc.code, error=exc.message)
        paced = await self._pace(workspace_id, channel, message)
        if paced is not None:
            return paced
        result = await self.client.send_message(channel, body)
        if not result.ok:
            if result.error_code in TEMPLATE_STATE_CODES and template is not None:
                await self._templates.update(
                    workspace_id,
                    template["_id"],
                    {"status": TEMPLATE_STATE_CODES[result.error_code], "updated_at": self._clock.now()},
                )
            return SendResult(
                ok=False,
                retry=result.retry,
                error_code=result.error_code,
                error=result.error,
                retry_after=result.retry_after,
            )
        wamid = _wamid(result.body)
        await self._record(workspace_id, message, channel, wamid, template, result.body)
        return SendResult(ok=True, provider_id=wamid)

    async def _typing(self, channel: dict[str, Any], message: dict[str, Any]) -> SendResult:
        """The read receipt with the typing indicator: nothing is recorded, nothing retried later."""
        result = await self.client.send_message(channel, typing_receipt(message))
        if result.ok:
            return SendResult(ok=True)
        return SendResult(ok=False, retry=False, error_code=result.error_code, error=result.error)

    async def _pace(
        self, workspace_id: str, channel: dict[str, Any], message: dict[str, Any]
    ) -> SendResult | None:
        """None when the message may go to its customer now, else how long to hold it."""
        if self.pacer is None:
            return None
        number = scoped_id(workspace_id, str(channel.get("phone_number_id")))
        wait = await self.pacer.try_send(number, str(message.get("to")))
        if wait <= 0:
            return None
        return SendResult(
            ok=False,
            retry=True,
            error_code=PAIR_RATE,
            error=f"this customer got many messages from the number just now; the next goes in {wait:.0f} s",
            retry_after=wait,
        )

    async def _usable_template(
        self, workspace_id: str, message: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, SendResult | None]:
        spec = message.get("template") or {}
        name, language = str(spec.get("name")), spec.get("language")
        if self._cached_template is not None:
            cached = await self._cached_template(workspace_id, name, language)
            if cached is not None and cached.get("status") in SENDABLE_TEMPLATE_STATUSES:
                return cached, None
        # Not cached, or not sendable in the cache: the store decides (a refusal is for good).
        found = await self._templates.get_by_name(workspace_id, name, language)
        if not found:
            return None, _refuse(
                "TEMPLATE_MISSING",
                f"template {spec.get('name')!r} ({spec.get('language')}) does not exist in this workspace",
            )
        template = found[0]
        status = template.get("status")
        if status == "PAUSED":
            return None, _refuse(
                "TEMPLATE_PAUSED",
                f"template {template['name']!r} is paused by Meta (low quality); it cannot be sent until "
                "Meta unpauses it",
            )
        if status == "DISABLED":
            return None, _refuse(
                "TEMPLATE_DISABLED",
                f"template {template['name']!r} was disabled by Meta; create and submit a new template",
            )
        if status not in SENDABLE_TEMPLATE_STATUSES:
            reason = f" ({template['rejection_reason']})" if template.get("rejection_reason") else ""
            return None, _refuse(
                "TEMPLATE_NOT_APPROVED",
                f"template {template['name']!r} is {status}{reason}; only approved templates can be sent",
            )
        return template, None

    async def _record(
        self,
        workspace_id: str,
        message: dict[str, Any],
        channel: dict[str, Any],
        wamid: str | None,
        template: dict[str, Any] | None,
        answer: Any,
    ) -> None:
        record = {k: v for k, v in message.items() if k not in ("id", "to")}
        document = {
            **record,
            "_id": message["id"],
            "workspace_id": workspace_id,
            **message_address(message),
            "channel": CHANNEL,
            "channel_id": channel.get("_id"),
            "status": _accepted_status(answer),
            "provider_id": wamid,
            "at": self._clock.now(),
        }
        if template is not None:
            contact = await self._contacts.load(ContactKey.referenced_by(document))
            is_open = window_open(contact.get("last_inbound_at") if contact else None, self._clock.now())
            document["template_category"] = template.get("category")
            phone = str(message.get("to") or "")
            document["cost_estimate"] = estimate(str(template.get("category")), phone, is_open)
            reached = message.get("to") or message.get("recipient")
            if not is_open and self._reach is not None and isinstance(reached, str):
                # a business-initiated conversation (reach is counted per phone or recipient id)
                await self._reach.record(
                    workspace_id, [reached], self._clock.now(), portfolio=channel.get("business_id")
                )
        if not await self._messages.record_outbound(document):
            log.warning("message %s was already recorded; sent again as %s", message["id"], wamid)


def _refuse(code: str, error: str) -> SendResult:
    return SendResult(ok=False, retry=False, error_code=code, error=error)


def _wamid(body: Any) -> str | None:
    messages = (body or {}).get("messages") if isinstance(body, dict) else None
    return messages[0].get("id") if messages else None


def _accepted_status(body: Any) -> str:
    """``accepted`` (or Meta's ``held_for_quality_assessment`` / ``paused``), never ``sent`` yet."""
    messages = (body or {}).get("messages") if isinstance(body, dict) else None
    status = messages[0].get("message_status") if messages else None
    return str(status or "accepted")
