"""A real HTTP fake of Meta's Graph API on loopback, strict about the request format.

Every request is checked against Meta's published OpenAPI description (``openapi.py``): the body
against the operation's request schema, the auth header against the configured token, and
answered with a body that matches the documented response schema. A non-conforming request gets
Graph's own error shape (HTTP 400, code 100) and is recorded with the reason, so a test sees both
what the product sent and why the fake refused it.

Faults are queued per test (``fail``, ``rate_limit``, ``server_errors``, ``timeouts``, ``resets``,
``permanent``, ``late_answers``, ``hold_answers``) and consumed by the next matching requests.

Platform rules of 2025-2026 the v23.0 description does not carry, enforced where Meta would
(facts and sources: ``tests/conformance/whatsapp-2026.md``; each also named at its code below):

- the read receipt with the typing indicator (``status: read``, ``message_id``,
  ``typing_indicator: {type: text}``) on ``/messages``, answered ``{"success": true}``;
- 131049 for a marketing template to a US phone number, and for a recipient at Meta's per-user
  marketing cap (``cap_marketing``);
- 131056 past the pair rate (one message every ``pair_interval`` seconds per number and
  recipient, bursts to ``pair_burst``), on the fake's own clock (``clock``);
- messaging limits per business portfolio (``portfolio_limits``: unique template recipients per
  24 h, shared by every number of the portfolio, ``numbers``), answered 131048. Reused by the throughput benchmark
and reliability tests, so it is a plain asyncio server (no framework) that can also run in a
thread of its own (``ThreadedGraphApiFake``) for synchronous callers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import phonenumbers
from jsonschema import Draft202012Validator

from tests.support.openapi import Operation, describe, operation

MESSAGES = operation("/{Version}/{Phone-Number-ID}/messages", "post")
TEMPLATES_POST = operation("/{Version}/{WABA-ID}/message_templates", "post")
TEMPLATES_GET = operation("/{Version}/{WABA-ID}/message_templates", "get")
TEMPLATE_EDIT = operation("/{Version}/{TEMPLATE_ID}", "post")

# Meta's error codes the tests inject, with the HTTP status and message Meta uses for them.
# Source: developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes.
ERRORS: dict[int, tuple[int, str, str]] = {
    1: (500, "An unknown error occurred", "Invalid request or possible server error."),
    2: (503, "Service temporarily unavailable", "Temporary due to downtime or due to being overloaded."),
    4: (429, "Application request limit reached", "The app has reached its API call rate limit."),
    100: (400, "Invalid parameter", "The request included one or more unsupported or misspelled parameters."),
    190: (401, "Invalid OAuth access token", "Your access token has expired or is invalid."),
    130429: (429, "Rate limit hit", "Cloud API message throughput has been reached."),
    131000: (500, "Something went wrong", "Message failed to send due to an unknown error."),
    131008: (400, "Required parameter is missing", "The request is missing a required parameter."),
    131009: (400, "Parameter value is not valid", "One or more parameter values are invalid."),
    131026: (
        400,
        "Message undeliverable",
        "Unable to deliver message: the recipient is not on WhatsApp or has not accepted the terms.",
    ),
    131048: (
        400,
        "Spam rate limit hit",
        "Message failed to send because there are restrictions on how many messages can be sent from "
        "this phone number. This may be because too many previous messages were blocked or flagged as spam.",
    ),
    131049: (
        400,
        "This message was not delivered to maintain healthy ecosystem engagement.",
        "In order to maintain a healthy ecosystem engagement, the message failed to be delivered.",
    ),
    131047: (
        400,
        "Re-engagement message",
        "Message failed to send because more than 24 hours have passed since the customer last "
        "replied to this number.",
    ),
    131051: (400, "Unsupported message type", "Unsupported message type."),
    131056: (
        429,
        "(Business Account, Consumer Account) pair rate limit hit",
        "Too many messages sent from the sender phone number to the same recipient phone number "
        "in a short period of time.",
    ),
    132000: (
        400,
        "Number of parameters does not match the expected number of params",
        "The number of variable parameter values does not match the number defined in the template.",
    ),
    132001: (
        404,
        "Template does not exist",
        "The template does not exist in the specified language or the template has not been approved.",
    ),
    132012: (
        400,
        "Parameter format does not match format in the created template",
        "Parameter format mismatch.",
    ),
    132015: (400, "Template is Paused", "Template is paused due to low quality so it cannot be sent."),
    132016: (400, "Template is Disabled", "Template has been paused too many times and is now disabled."),
    # 2026: tests/conformance/whatsapp-bsuid.md ("Sending").
    131062: (
        400,
        "Business-scoped user ID recipients not supported",
        "This message cannot be sent to a business-scoped user ID (one-tap, zero-tap and copy-code "
        "authentication templates need the recipient's phone number).",
    ),
}

# Where the fake follows the 2026 platform (tests/conformance/whatsapp-bsuid.md) and not Meta's
# v23.0 description, which predates business-scoped user IDs: (what, source). The request schema
# is relaxed to match in ``tests/support/openapi.py`` (ERRATA).
BSUID_DEVIATIONS: tuple[tuple[str, str], ...] = (
    (
        "a send names its recipient by `to` (a phone number) or by `recipient` (a BSUID or parent "
        "BSUID); `to` wins when both are given; one of the two is required",
        "business-scoped-user-ids, Sending",
    ),
    (
        "the answer to a send to a BSUID lists the recipient as `contacts[{input, user_id}]`",
        "business-scoped-user-ids, Sending",
    ),
    (
        "an AUTHENTICATION template sent to a BSUID is refused with 131062: Meta refuses one-tap, "
        "zero-tap and copy-code authentication templates, and every authentication template carries "
        "one of those one-time-password buttons",
        "business-scoped-user-ids, Sending (error 131062)",
    ),
    (
        "webhooks name customers by `user_id` / `from_user_id` / `recipient_user_id`, with `wa_id` / "
        "`from` only when the number is shared (built by tests/support/whatsapp_people.py)",
        "business-scoped-user-ids, Incoming messages and Status webhooks",
    ),
)


def graph_error(
    code: int, details: str | None = None, message: str | None = None
) -> tuple[int, dict[str, Any]]:
    """Meta's error body: ``{"error": {message, type, code, error_data: {details}, fbtrace_id}}``."""
    status, title, default_details = ERRORS.get(code, (400, "Error", "Error"))
    body = {
        "error": {
            "message": message or f"(#{code}) {title}",
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details or default_details},
            "fbtrace_id": "A" + os.urandom(8).hex(),
        }
    }
    return status, body


@dataclass
class Received:
    """One request as the fake saw it, and what it answered."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    at: float
    status: int = 0
    error: str | None = None
    fault: str | None = None
    answer: Any = None  # the body the fake answered with
    answer_delay: float = 0.0  # seconds the answer waited ("late" fault)
    held: Fault | None = None  # the answer waits until this fault is released ("held" fault)


@dataclass
class Fault:
    """What to do instead of answering normally, for the next ``times`` matching requests."""

    kind: str  # "error" | "timeout" | "reset" | "late" | "held"
    times: int = 1
    seconds: float = 0.0  # "late": how long the (normal) answer waits
    code: int = 0
    status: int | None = None
    details: str | None = None
    retry_after: float | None = None
    to: str | None = None  # only requests to this recipient (digits as sent); None: any
    path: str = "messages"  # which endpoint it applies to ("messages", "message_templates", "*")
    receipts: bool = False  # read receipts (typing indicator) instead of messages
    # "held": set when a held request has arrived; the answers go once ``release`` is called.
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        """Let the held answers go (and every later request this fault takes)."""
        self.released.set()

    def matches(self, received: Received) -> bool:
        if self.times <= 0 or _is_receipt(received.body) != self.receipts:
            return False
        if self.path != "*" and not received.path.endswith("/" + self.path):
            return False
        if self.to is None:
            return True
        body = received.body if isinstance(received.body, dict) else {}
        return self.to in (body.get("to"), body.get("recipient"))


@dataclass
class FakeTemplate:
    id: str
    name: str
    language: str
    category: str
    components: list[dict[str, Any]]
    status: str = "PENDING"
    rejected_reason: str = "NONE"


@dataclass
class GraphApiFake:
    """Loopback Graph API. ``await start()``, point a channel at ``url``, inspect ``requests``."""

    token: str = "test-token"
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"
    phone_number_id: str = "106540352242922"
    waba_id: str = "102290129340398"
    version: str = "v23.0"
    validate: bool = True
    initial_template_status: str = "PENDING"
    hang_seconds: float = 30.0
    requests: list[Received] = field(default_factory=list)
    templates: dict[tuple[str, str], FakeTemplate] = field(default_factory=dict)
    on_request: Callable[[Received], None] | None = None
    # Platform rules of 2025-2026 (module docstring). ``business_id``: the primary number's
    # portfolio; ``numbers``: further phone number ids -> their portfolio (None: none).
    business_id: str | None = None
    numbers: dict[str, str | None] = field(default_factory=dict)
    portfolio_limits: dict[str, int] = field(default_factory=dict)
    pair_interval: float | None = 6.0  # None: the pair rate is not enforced
    pair_burst: int = 45
    clock: Callable[[], float] = time.monotonic
    _marketing_caps: dict[str, int] = field(default_factory=dict)
    _reached: dict[str, dict[str, float]] = field(default_factory=dict)
    _pairs: dict[tuple[str, str], float] = field(default_factory=dict)
    _faults: list[Fault] = field(default_factory=list)
    _server: asyncio.base_events.Server | None = None
    _port: int = 0
    _handlers: set[asyncio.Task[Any]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _stopping: asyncio.Event | None = None
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> GraphApiFake:
        self._stopping = asyncio.Event()
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0, backlog=1024)
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            assert self._stopping is not None
            self._stopping.set()  # wakes requests hanging in a timeout fault
            for writer in list(self._writers):
                writer.transport.abort()  # handlers see the connection end and return
            if self._handlers:
                await asyncio.wait(list(self._handlers), timeout=2)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def channel_fields(self) -> dict[str, Any]:
        """What ``server.store.channels.new_channel`` needs to send through this fake."""
        return {
            "phone_number_id": self.phone_number_id,
            "waba_id": self.waba_id,
            "access_token": self.token,
            "base_url": self.url,
            "api_version": self.version,
            "auth_header": self.auth_header,
            "auth_scheme": self.auth_scheme,
            "business_id": self.business_id,
        }

    # --- faults -----------------------------------------------------------------------------

    def fail(self, code: int, times: int = 1, **options: Any) -> Fault:
        """Answer the next ``times`` matching requests with Meta error ``code``."""
        fault = Fault("error", times=times, code=code, **options)
        self._faults.append(fault)
        return fault

    def rate_limit(self, times: int = 1, code: int = 130429, **options: Any) -> Fault:
        return self.fail(code, times, **options)

    def server_errors(self, times: int = 1, status: int = 503, **options: Any) -> Fault:
        return self.fail(2 if status == 503 else 1, times, status=status, **options)

    def permanent(self, code: int, times: int = 1, **options: Any) -> Fault:
        return self.fail(code, times, **options)

    def timeouts(self, times: int = 1, **options: Any) -> Fault:
        fault = Fault("timeout", times=times, **options)
        self._faults.append(fault)
        return fault

    def late_answers(self, seconds: float, times: int = 1, **options: Any) -> Fault:
        """Take the next ``times`` matching requests as usual (a message is accepted and counted
        as sent) but write the answer ``seconds`` later: Meta got the message, the client's read
        timeout (or a stalled client) lost the answer."""
        fault = Fault("late", times=times, seconds=seconds, **options)
        self._faults.append(fault)
        return fault

    def hold_answers(self, times: int = 1, **options: Any) -> Fault:
        """Take the next ``times`` matching requests as usual (accepted, counted as sent) but hold
        each answer until the test calls ``release()`` on the returned fault (``arrived`` is set
        once one is held): a send kept in flight for as long as a test needs, no timing involved."""
        fault = Fault("held", times=times, **options)
        self._faults.append(fault)
        return fault

    def resets(self, times: int = 1, **options: Any) -> Fault:
        fault = Fault("reset", times=times, **options)
        self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        self._faults.clear()

    # --- views for tests --------------------------------------------------------------------

    def sent(self) -> list[dict[str, Any]]:
        """Bodies of the messages the fake accepted (answered 200), in order (read receipts aside)."""
        return [
            r.body
            for r in self.requests
            if r.path.endswith("/messages") and r.status == 200 and not _is_receipt(r.body)
        ]

    def read_receipts(self) -> list[dict[str, Any]]:
        """Bodies of the read receipts (typing indicator) the fake accepted, in order."""
        return [
            r.body
            for r in self.requests
            if r.path.endswith("/messages") and r.status == 200 and _is_receipt(r.body)
        ]

    def cap_marketing(self, to: str, times: int = 1) -> None:
        """The next ``times`` marketing templates to ``to`` (digits as sent) meet Meta's per-user cap."""
        self._marketing_caps[to.lstrip("+")] = times

    def rejected(self) -> list[Received]:
        return [r for r in self.requests if r.status >= 400 and r.fault is None]

    def add_template(
        self,
        name: str,
        language: str,
        category: str,
        components: list[dict[str, Any]],
        status: str = "APPROVED",
    ) -> FakeTemplate:
        """A template made outside the product (e.g. in WhatsApp Manager)."""
        template = FakeTemplate(str(10**15 + next(self._ids)), name, language, category, components, status)
        self.templates[(name, language)] = template
        return template

    def set_template_status(self, name: str, language: str, status: str, reason: str | None = None) -> None:
        template = self.templates[(name, language)]
        template.status = status
        template.rejected_reason = reason or "NONE"

    # --- HTTP -------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    break
                method, target, headers, raw = request
                outcome = await self._handle(method, target, headers, raw)
                if outcome is None:  # connection reset
                    _reset(writer)
                    return
                status, body, extra = outcome
                _write_response(writer, status, body, extra)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._handlers.discard(task)
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def _handle(
        self, method: str, target: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, Any, dict[str, str]] | None:
        parts = urlsplit(target)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        received = Received(method, parts.path, parse_qs(parts.query), headers, body, time.monotonic())
        self.requests.append(received)
        if self.on_request is not None:
            self.on_request(received)
        status, answer, extra = self._answer(received)
        received.status = status
        if received.answer_delay:
            assert self._stopping is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), received.answer_delay)
        if received.held is not None:
            assert self._stopping is not None
            received.held.arrived.set()
            stopping = asyncio.ensure_future(self._stopping.wait())
            released = asyncio.ensure_future(received.held.released.wait())
            await asyncio.wait({stopping, released}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            released.cancel()
        received.answer = answer
        if status == -1:
            return None
        if status == -2:
            assert self._stopping is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.hang_seconds)
            status, answer = graph_error(2)
            received.status = status
        return status, answer, extra

    def _answer(self, received: Received) -> tuple[int, Any, dict[str, str]]:
        auth = received.headers.get(self.auth_header.lower())
        expected = f"{self.auth_scheme} {self.token}".strip() if self.auth_scheme else self.token
        if auth != expected:
            received.error = f"auth header {self.auth_header!r} is {auth!r}"
            return (*graph_error(190), {})
        fault = next((f for f in self._faults if f.matches(received)), None)
        if fault is not None:
            fault.times -= 1
            received.fault = fault.kind if fault.kind != "error" else str(fault.code)
            if fault.kind == "reset":
                return -1, None, {}
            if fault.kind == "timeout":
                return -2, None, {}
            if fault.kind == "late":
                received.answer_delay = fault.seconds
                fault = None
            elif fault.kind == "held":
                received.held = fault
                fault = None
        if fault is not None:
            status, answer = graph_error(fault.code, fault.details)
            extra = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
            return fault.status or status, answer, extra
        if received.path.endswith("/messages") and _is_receipt(received.body):
            return (*self._receipt(received), {})
        route = self._route(received)
        if route is None:
            received.error = f"no such endpoint: {received.method} {received.path}"
            return (*graph_error(100, received.error, "Unsupported request - method type or path"), {})
        op, handler = route
        problem = self._check(op, received)
        if problem is not None:
            received.error = problem
            return (*graph_error(100, problem), {})
        status, answer = handler(received)
        if status == 200 and self.validate and "200" in op.responses:
            errors = list(op.responses["200"].iter_errors(answer))
            assert not errors, f"the fake answered off-spec: {describe(errors)}"
        return status, answer, {}

    def _route(self, received: Received) -> tuple[Operation, Callable[[Received], tuple[int, Any]]] | None:
        segments = received.path.strip("/").split("/")
        if len(segments) == 2 and segments[0] == self.version and received.method == "POST":
            if any(t.id == segments[1] for t in self.templates.values()):
                return TEMPLATE_EDIT, self._edit_template
            return None
        if len(segments) != 3:
            return None
        version, owner, edge = segments
        if version != self.version:
            return None
        if edge == "messages" and received.method == "POST" and self._knows(owner):
            return MESSAGES, self._send
        if edge == "message_templates" and owner == self.waba_id:
            if received.method == "POST":
                return TEMPLATES_POST, self._create_template
            if received.method == "GET":
                return TEMPLATES_GET, self._list_templates
        return None

    def _check(self, op: Operation, received: Received) -> str | None:
        if not self.validate:
            return None
        for name, param in op.headers.items():
            value = received.headers.get(name)
            schema = param.get("schema") or {}
            if name == "authorization" and self.auth_header.lower() != "authorization":
                continue  # a provider's own key header replaces Meta's bearer token
            required = bool(param.get("required"))
            if name == "content-type":
                required = received.method != "GET"  # only requests with a body have a type
            if value is None:
                if required:
                    return f"header {param['name']} is required"
                continue
            if name == "content-type":
                value = value.split(";")[0].strip()
            if "enum" in schema and value not in schema["enum"]:
                return f"header {param['name']}: {value!r} is not one of {schema['enum']}"
            if "pattern" in schema and not re.search(schema["pattern"], value):
                return f"header {param['name']}: {value!r} does not match {schema['pattern']}"
        if op.request is not None:
            if not isinstance(received.body, dict):
                return "the body must be a JSON object"
            errors = list(op.request.iter_errors(received.body))
            if errors:
                return describe(errors)
        elif received.body not in (None, ""):
            return "this request takes no body"
        return None

    # --- endpoints --------------------------------------------------------------------------

    def _send(self, received: Received) -> tuple[int, Any]:
        body = received.body
        if body.get("messaging_product") != "whatsapp":
            return graph_error(100, "messaging_product must be 'whatsapp'")
        to, bsuid = body.get("to"), body.get("recipient")
        if not to and not bsuid:
            return graph_error(100, "the message needs `to` (a phone number) or `recipient` (a BSUID)")
        if body.get("type") == "template":
            template = body["template"]
            found = self.templates.get((template["name"], template["language"]["code"]))
            if found is not None and found.status != "APPROVED":
                return graph_error(132001, f"template {found.name} is {found.status}")
            mismatch = _parameters_mismatch(found.components, template) if found is not None else None
            if mismatch is not None:
                return graph_error(*mismatch)
            if not to and found is not None and found.category == "AUTHENTICATION":
                return graph_error(131062)  # BSUID_DEVIATIONS
        refused = self._platform_rules(received.path.strip("/").split("/")[1], body)
        if refused is not None:
            return refused
        wamid = "wamid." + os.urandom(18).hex().upper()
        contact = {"input": to, "wa_id": str(to).lstrip("+")} if to else {"input": bsuid, "user_id": bsuid}
        return 200, {
            "messaging_product": "whatsapp",
            "contacts": [contact],
            "messages": [{"id": wamid, "message_status": "accepted"}],
        }

    # --- platform rules of 2025-2026 (module docstring; tests/conformance/whatsapp-2026.md) ----

    def _knows(self, number: str) -> bool:
        return number == self.phone_number_id or number in self.numbers

    def _portfolio(self, number: str) -> str | None:
        return self.business_id if number == self.phone_number_id else self.numbers.get(number)

    def _receipt(self, received: Received) -> tuple[int, Any]:
        """Mark as read + typing indicator. Source: developers.facebook.com/documentation/
        business-messaging/whatsapp/typing-indicators (not in the v23.0 description)."""
        number = received.path.strip("/").split("/")[1]
        if not self._knows(number):
            received.error = f"no such number: {number}"
            return graph_error(100, received.error, "Unsupported request - method type or path")
        errors = sorted(RECEIPT.iter_errors(received.body), key=lambda e: list(e.path))
        if errors:
            received.error = describe(errors)
            return graph_error(100, received.error)
        return 200, {"success": True}

    def _platform_rules(self, number: str, body: dict[str, Any]) -> tuple[int, Any] | None:
        """Meta's refusals of 2025-2026 for an otherwise valid send (None: accepted)."""
        to = str(body.get("to") or body.get("recipient") or "").lstrip("+")
        now = self.clock()
        if self.pair_interval is not None:  # Meta's throughput page: 1 per 6 s, bursts to 45
            tat = max(self._pairs.get((number, to), now), now)
            if tat - now > (self.pair_burst - 1) * self.pair_interval:
                return graph_error(131056)
            self._pairs[(number, to)] = tat + self.pair_interval
        if body.get("type") != "template":
            return None
        spec = body["template"]
        found = self.templates.get((spec["name"], spec["language"]["code"]))
        if found is not None and found.category == "MARKETING":
            if _region(to) == "US":  # whatsapp-2026.md: not delivered since 2025-04-01 (131049)
                return graph_error(131049)
            if self._marketing_caps.get(to, 0) > 0:  # the per-user marketing cap
                self._marketing_caps[to] -= 1
                return graph_error(131049)
        portfolio = self._portfolio(number)
        limit = self.portfolio_limits.get(portfolio or "")
        if portfolio is not None and limit is not None:
            # whatsapp-2026.md: since 2025-10-07 the limit is per portfolio, shared by its numbers.
            # Approximation: every template opens a business-initiated conversation (the fake sees
            # no inbound messages, so it cannot tell an open window). No code is documented for
            # going over; BSPs report 131048 (help.wanotifier.com, "Fix Error: [131048]").
            reached = {r: at for r, at in self._reached.get(portfolio, {}).items() if now - at < 86_400}
            if to not in reached and len(reached) >= limit:
                return graph_error(131048)
            reached[to] = now
            self._reached[portfolio] = reached
        return None

    def _create_template(self, received: Received) -> tuple[int, Any]:
        body = received.body
        for key in ("name", "language", "category", "components"):
            if not body.get(key):
                return graph_error(100, f"param {key} is required")
        if body["category"] not in ("MARKETING", "UTILITY", "AUTHENTICATION"):
            return graph_error(100, f"category {body['category']!r} is not valid")
        if not re.fullmatch(r"[a-z0-9_]{1,512}", body["name"]):
            return graph_error(100, "name may only contain lowercase characters, digits and underscores")
        if (body["name"], body["language"]) in self.templates:
            return graph_error(
                100, f"Content in this language already exists for {body['name']}", "Invalid parameter"
            )
        template = FakeTemplate(
            id=str(10**15 + next(self._ids)),
            name=body["name"],
            language=body["language"],
            category=body["category"],
            components=body["components"],
            status=self.initial_template_status,
        )
        self.templates[(template.name, template.language)] = template
        return 200, {"id": template.id, "status": template.status, "category": template.category}

    def _edit_template(self, received: Received) -> tuple[int, Any]:
        template_id = received.path.strip("/").split("/")[1]
        template = next(t for t in self.templates.values() if t.id == template_id)
        if template.status not in ("REJECTED", "APPROVED", "PAUSED"):
            return graph_error(100, f"a {template.status} template cannot be edited")
        body = received.body
        if body.get("components"):
            template.components = body["components"]
        if body.get("category"):
            template.category = body["category"]
        template.status = self.initial_template_status
        template.rejected_reason = "NONE"
        return 200, {"success": True}

    def _list_templates(self, received: Received) -> tuple[int, Any]:
        name = (received.query.get("name") or [None])[0]
        data = [
            {
                "id": t.id,
                "name": t.name,
                "language": t.language,
                "category": t.category,
                "status": t.status,
                "rejected_reason": t.rejected_reason,
                "components": t.components,
            }
            for t in self.templates.values()
            if name is None or t.name == name
        ]
        return 200, {"data": data, "paging": {"cursors": {"before": "MAZDZD", "after": "MjQZD"}}}


# --- the read receipt with the typing indicator (not in the v23.0 description) -----------------

RECEIPT = Draft202012Validator(
    {
        "type": "object",
        "required": ["messaging_product", "status", "message_id"],
        "additionalProperties": False,
        "properties": {
            "messaging_product": {"const": "whatsapp"},
            "status": {"const": "read"},
            "message_id": {"type": "string", "minLength": 1},
            "typing_indicator": {
                "type": "object",
                "required": ["type"],
                "additionalProperties": False,
                "properties": {"type": {"const": "text"}},
            },
        },
    }
)


def _is_receipt(body: Any) -> bool:
    return isinstance(body, dict) and "status" in body and "type" not in body


def _region(digits: str) -> str | None:
    """The ISO region of a recipient's number (Google's libphonenumber, not the product's table)."""
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse("+" + digits))
    except phonenumbers.NumberParseException:
        return None


# --- what Meta checks of a template send against the template it has ---------------------------

_VARIABLE = re.compile(r"\{\{\s*(\d+)\s*\}\}")


def _parameters_mismatch(components: list[dict[str, Any]], sent: dict[str, Any]) -> tuple[int, str] | None:
    """Meta's 132000 (parameter count) / 132012 (parameter format) for a send that does not fit.

    The OpenAPI description checks a send's shape; this checks it against the template itself,
    as Meta does: one value per ``{{n}}`` of header and body, the header's media kind, and a
    parameter for every dynamic URL and copy-code button at its index, of the button's kind.
    """
    by_type = {str(c.get("type") or "").upper(): c for c in components}
    parts = {str(c.get("type")).lower(): c for c in sent.get("components") or [] if c.get("type") != "button"}
    header = by_type.get("HEADER")
    given_header = (parts.get("header") or {}).get("parameters") or []
    header_format = str((header or {}).get("format") or "TEXT").upper()
    if header is None or (header_format == "TEXT" and not _VARIABLE.search(header.get("text") or "")):
        wanted_header: list[str] = []
    else:
        wanted_header = ["text" if header_format == "TEXT" else header_format.lower()]
    if len(given_header) != len(wanted_header):
        return 132000, f"header: {len(wanted_header)} parameter(s) expected, {len(given_header)} given"
    if [p.get("type") for p in given_header] != wanted_header:
        return 132012, f"header parameter must be of type {wanted_header}"
    body_text = (by_type.get("BODY") or {}).get("text") or ""
    wanted_body = max((int(n) for n in _VARIABLE.findall(body_text)), default=0)
    given_body = (parts.get("body") or {}).get("parameters") or []
    if len(given_body) != wanted_body:
        return 132000, f"body: {wanted_body} parameter(s) expected, {len(given_body)} given"
    buttons = (by_type.get("BUTTONS") or {}).get("buttons") or []
    sub_types = {"QUICK_REPLY": "quick_reply", "URL": "url", "COPY_CODE": "copy_code"}
    given_buttons = {
        int(c.get("index", -1)): c for c in sent.get("components") or [] if c.get("type") == "button"
    }
    for index, component in given_buttons.items():
        if not 0 <= index < len(buttons):
            return 132012, f"button index {index}: the template has {len(buttons)} button(s)"
        kind = str(buttons[index].get("type") or "").upper()
        if sub_types.get(kind) != component.get("sub_type"):
            return 132012, f"button {index} is {kind}, not {component.get('sub_type')}"
        if kind == "URL" and not _VARIABLE.search(buttons[index].get("url") or ""):
            return 132000, f"button {index} has a fixed URL and takes no parameter"
    for index, button in enumerate(buttons):
        kind = str(button.get("type") or "").upper()
        dynamic = kind == "COPY_CODE" or (kind == "URL" and _VARIABLE.search(button.get("url") or ""))
        if dynamic and index not in given_buttons:
            return 132000, f"button {index} ({kind}) needs its parameter"
    return None


# --- a minimal HTTP/1.1 server side (keep-alive, Content-Length bodies) -----------------------


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length") or 0)
    raw = await reader.readexactly(length) if length else b""
    return method, target, headers, raw


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests"}


def _write_response(writer: asyncio.StreamWriter, status: int, body: Any, extra: dict[str, str]) -> None:
    payload = json.dumps(body).encode()
    reason = _REASONS.get(status, "Error")
    headers = {
        "Content-Type": "application/json; charset=UTF-8",
        "Content-Length": str(len(payload)),
        "facebook-api-version": "v23.0",
        **extra,
    }
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(head.encode("latin-1") + b"\r\n" + payload)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Drop the connection with a TCP RST, as a flaky network or a crashed front end does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class ThreadedGraphApiFake:
    """The fake on an event loop of its own thread, for synchronous code (benchmarks, scripts)."""

    def __init__(self, **options: Any) -> None:
        self.fake = GraphApiFake(**options)
        try:  # uvloop (shipped with uvicorn[standard]) roughly halves the fake's cost per request
            import uvloop

            self._loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        except ImportError:  # pragma: no cover - plain asyncio works too
            self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="graph-api-fake", daemon=True)

    def start(self) -> GraphApiFake:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.fake.start(), self._loop).result(10)
        return self.fake

    def call(self, function: Callable[[], Any]) -> Any:
        """Run ``function`` on the fake's loop (fault knobs are not thread-safe otherwise)."""

        async def run() -> Any:
            return function()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.fake.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
