"""``GET/POST /webhooks/whatsapp/{channel_id}``: Meta's verification handshake and its event POSTs.

POST answers as soon as the events are stored (the actors apply them afterwards), because Meta
retries anything slower or non-200: 401 for a bad signature (nothing recorded), 403 for a channel
whose URL Meta has not verified yet (nothing recorded: a number takes traffic only after the
handshake; Meta verifies a callback URL before it posts to it, and retries what was refused),
400 for a body that is not a WhatsApp webhook, 413 past the app-wide ``KONVO_MAX_BODY_BYTES``
(``server/web/body_limit.py``, before this handler runs), 503 when the store
cannot take it (Meta retries later), 404 for an unknown channel, 410 for a disconnected one (its
number is no longer served here) or while the channel's workspace is disabled by the operator
(nothing recorded in either case). Never a 500 for what the sender got wrong.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pymongo.errors import PyMongoError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from server.channels.whatsapp.signature import HEADER, signature_valid
from server.channels.whatsapp.webhook import MalformedWebhook, parse_webhook
from server.errors import Unavailable
from server.json_limits import JsonTooDeep, check_json_depth
from server.operations.channel_inbound import receive_whatsapp
from server.services import Services
from server.store.channels import is_connected, webhook_verified

log = logging.getLogger(__name__)

PATH = "/webhooks/whatsapp/{channel_id}"

Endpoint = Callable[[Request], Awaitable[Response]]


def whatsapp_routes(services: Services) -> list[Route]:
    return [Route(PATH, _endpoint(services), methods=["GET", "POST"], name="whatsapp-webhook")]


def _endpoint(services: Services) -> Endpoint:
    async def webhook(request: Request) -> Response:
        channel_id = request.path_params["channel_id"]
        try:
            channel = await services.channel.by_id(channel_id)
        except PyMongoError as exc:
            return _unavailable(channel_id, exc)
        if channel is None or channel.get("kind", "whatsapp") != "whatsapp":
            return _problem(404, f"no WhatsApp channel {channel_id!r}")
        if not is_connected(channel):
            log.info(
                "whatsapp webhook %s %s answered 410: the channel is disconnected", request.method, channel_id
            )
            return _problem(410, "this WhatsApp channel was disconnected")
        try:
            admitted = await services.workspace_gate.admit(channel["workspace_id"])
        except PyMongoError as exc:
            return _unavailable(channel_id, exc)
        if admitted is None:
            log.info("whatsapp webhook for %s answered 410: its workspace is disabled", channel_id)
            return _problem(410, "this channel's workspace is disabled; nothing was stored")
        with admitted:  # the workspace's work in flight until stored: a deletion waits for it
            if request.method == "GET":
                return await _verify(services, request, channel)
            return await _receive(services, request, channel)

    return webhook


async def _verify(services: Services, request: Request, channel: dict[str, Any]) -> Response:
    """Meta subscribes a callback URL by GETting it with the verify token we gave it.

    The first completed handshake marks the channel verified: from then on it takes events.
    """
    query = request.query_params
    token = query.get("hub.verify_token") or ""
    expected = channel.get("verify_token") or ""
    challenge = query.get("hub.challenge")
    if (
        query.get("hub.mode") == "subscribe"
        and challenge is not None
        and expected
        and hmac.compare_digest(token.encode(), expected.encode())
    ):
        if not webhook_verified(channel):
            try:
                if await services.channels.mark_webhook_verified(channel["_id"], services.clock.now()):
                    log.info("whatsapp channel %s verified by Meta's handshake", channel["_id"])
            except PyMongoError as exc:  # Meta repeats the handshake when it gets no answer
                return _unavailable(channel["_id"], exc)
            services.channel.forget(channel["workspace_id"])
        return PlainTextResponse(challenge)
    log.warning(
        "whatsapp verification refused for channel %s (mode %r)", channel["_id"], query.get("hub.mode")
    )
    return PlainTextResponse("verification refused", status_code=403)


async def _receive(services: Services, request: Request, channel: dict[str, Any]) -> Response:
    channel_id = channel["_id"]
    try:
        body = await request.body()  # the app's middleware has refused a body over the limit
    except ClientDisconnect:
        return _problem(400, "the client went away before the body was read")
    if not signature_valid(body, channel.get("app_secret"), request.headers.get(HEADER)):
        log.warning("whatsapp webhook for %s refused: missing or wrong %s", channel_id, HEADER)
        return _problem(401, f"missing or invalid {HEADER}")
    if not webhook_verified(channel):  # the cached document may predate a handshake just answered
        try:
            stored = await services.channels.get(channel_id)
        except PyMongoError as exc:
            return _unavailable(channel_id, exc)
        if stored is None or not webhook_verified(stored):
            log.warning("whatsapp webhook for %s refused: URL not verified by Meta yet", channel_id)
            return _problem(403, "this channel's webhook URL has not completed Meta's verification yet")
    try:
        check_json_depth(body, services.settings.max_json_depth)
        batch = parse_webhook(json.loads(body))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, JsonTooDeep, MalformedWebhook
        why = str(exc) if isinstance(exc, MalformedWebhook | JsonTooDeep) else f"body is not JSON: {exc}"
        log.warning("whatsapp webhook for %s refused: %s", channel_id, why)
        return _problem(400, why)
    try:
        received = await receive_whatsapp(services, channel, batch)
    except (PyMongoError, Unavailable) as exc:
        return _unavailable(channel_id, exc)
    log.info(
        "whatsapp webhook %s: %d new messages, %d repeats, statuses %s, %d template updates%s",
        channel_id,
        received.messages,
        received.duplicates,
        received.statuses,
        received.templates,
        f"; ignored: {received.ignored}" if received.ignored else "",
    )
    return JSONResponse({"ok": True})


def _problem(status: int, message: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": message}, status_code=status)


def _unavailable(channel_id: str, exc: Exception) -> JSONResponse:
    log.error("whatsapp webhook for %s not stored (Meta will retry): %s", channel_id, exc)
    return JSONResponse(
        {"ok": False, "error": "the store is unavailable; retry later"},
        status_code=503,
        headers={"Retry-After": "30"},
    )
