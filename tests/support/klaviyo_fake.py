"""A Klaviyo profile API on loopback that checks every request against Klaviyo's published facts.

Real HTTP (``ThreadingHTTPServer`` on 127.0.0.1, a thread of its own). Each request to
``POST /api/profile-import`` is checked against Klaviyo's published description (klaviyo/openapi,
``create_or_update_profile.json``, revision 2026-07-15): the
``Klaviyo-API-Key`` authorization, the ``revision`` header (2026-07-15, format
``YYYY-MM-DD[.suffix]``), JSON:API content type and accept, a body of at most 100 KB shaped
``{"data": {"type": "profile", "attributes": {...}}}`` with custom properties under
``attributes.properties``. A request that breaks a rule gets Klaviyo's 400 error document and
is listed in ``violations``. Failures (429 with ``Retry-After``, 5xx) can be queued.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REVISION = "2026-07-15"
MEDIA_TYPE = "application/vnd.api+json"
MAX_BODY = 100 * 1024
ATTRIBUTES = {
    "email",
    "phone_number",
    "external_id",
    "anonymous_id",
    "first_name",
    "last_name",
    "organization",
    "locale",
    "title",
    "image",
    "location",
    "properties",
}
_REVISION = re.compile(r"\d{4}-\d{2}-\d{2}(\.[a-z0-9]+)?")
_E164 = re.compile(r"\+[1-9]\d{6,14}")


@dataclass
class Received:
    headers: dict[str, str]
    body: dict[str, Any] | None
    status: int


@dataclass
class KlaviyoFake:
    private_key: str = "pk_test_konvo"
    requests: list[Received] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)  # phone -> properties
    _failures: list[tuple[int, str | None]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    base_url: str = ""

    def fail_next(self, status: int, times: int = 1, retry_after: str | None = None) -> None:
        """Answer the next ``times`` valid requests with ``status`` (429 may carry Retry-After)."""
        with self._lock:
            self._failures.extend([(status, retry_after)] * times)

    def check(self, headers: dict[str, str], raw: bytes) -> tuple[list[str], dict[str, Any] | None]:
        problems: list[str] = []
        auth = headers.get("authorization", "")
        if auth != f"Klaviyo-API-Key {self.private_key}":
            problems.append(f"Authorization must be 'Klaviyo-API-Key <private key>', got {auth!r}")
        revision = headers.get("revision", "")
        if not _REVISION.fullmatch(revision) or revision != REVISION:
            problems.append(f"revision header must be {REVISION}, got {revision!r}")
        if headers.get("content-type", "").split(";")[0].strip() != MEDIA_TYPE:
            problems.append(f"Content-Type must be {MEDIA_TYPE}")
        if MEDIA_TYPE not in headers.get("accept", ""):
            problems.append(f"Accept must be {MEDIA_TYPE}")
        if len(raw) > MAX_BODY:
            problems.append("payload over 100 KB")
        try:
            body = json.loads(raw)
        except ValueError:
            return [*problems, "body is not JSON"], None
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict) or set(body) != {"data"}:
            return [*problems, "body must be {'data': {...}}"], body
        if data.get("type") != "profile":
            problems.append("data.type must be 'profile'")
        attributes = data.get("attributes")
        if not isinstance(attributes, dict):
            return [*problems, "data.attributes must be an object"], body
        unknown = set(attributes) - ATTRIBUTES
        if unknown:
            problems.append(
                f"unknown attributes {sorted(unknown)}: custom ones go under attributes.properties"
            )
        if not any(attributes.get(k) for k in ("email", "phone_number", "external_id")) and "id" not in data:
            problems.append("a profile needs an email, phone_number, external_id or id")
        phone = attributes.get("phone_number")
        if phone is not None and not (isinstance(phone, str) and _E164.fullmatch(phone)):
            problems.append(f"phone_number must be E.164, got {phone!r}")
        if "properties" in attributes and not isinstance(attributes["properties"], dict):
            problems.append("attributes.properties must be an object")
        return problems, body

    def handle(self, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        problems, body = self.check(headers, raw)
        with self._lock:
            if problems:
                self.violations.extend(problems)
                self.requests.append(Received(headers, body, 400))
                errors = [
                    {
                        "id": "fake",
                        "code": "invalid",
                        "title": "Invalid input.",
                        "detail": p,
                        "source": {"pointer": "/data"},
                    }
                    for p in problems
                ]
                return 400, {"errors": errors}, {}
            if self._failures:
                status, retry_after = self._failures.pop(0)
                self.requests.append(Received(headers, body, status))
                extra = {"Retry-After": retry_after} if retry_after is not None else {}
                title = "Throttled" if status == 429 else "Server error"
                return (
                    status,
                    {
                        "errors": [
                            {
                                "id": "fake",
                                "code": str(status),
                                "title": title,
                                "detail": title,
                                "source": {"pointer": "/"},
                            }
                        ]
                    },
                    extra,
                )
            assert body is not None
            attributes = body["data"]["attributes"]
            phone = attributes["phone_number"]
            created = phone not in self.profiles
            profile = self.profiles.setdefault(phone, {})
            for name, value in (attributes.get("properties") or {}).items():
                if value is None:
                    profile.pop(name, None)  # null clears the property
                else:
                    profile[name] = value
            status = 201 if created else 200
            self.requests.append(Received(headers, body, status))
            return (
                status,
                {
                    "data": {
                        "type": "profile",
                        "id": f"prof_{len(self.profiles)}",
                        "attributes": {"phone_number": phone, "properties": dict(profile)},
                    }
                },
                {},
            )


@contextmanager
def klaviyo_fake(private_key: str = "pk_test_konvo") -> Iterator[KlaviyoFake]:
    fake = KlaviyoFake(private_key=private_key)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, document: dict[str, Any], extra: dict[str, str]) -> None:
            payload = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", MEDIA_TYPE)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path != "/api/profile-import":
                self._send(404, {"errors": [{"detail": f"no route {self.path}"}]}, {})
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            self._send(*fake.handle(headers, raw))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="klaviyo-fake", daemon=True)
    thread.start()
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
