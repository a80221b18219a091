"""Authenticating webhook requests against the trigger's secret, in constant time.

Schemes (a trigger's ``signature_scheme``, see ``scheme_of``):

- ``konvo``: ``X-Konvo-Signature: t=<unix seconds>,v1=<hex>``, the HMAC-SHA256 of ``"<t>.<body>"``
  (Stripe's scheme). The time must be within ``TOLERANCE_SECONDS`` of ours, and the caller
  refuses a second use of the same signature inside that window (``Verdict.replay_key``), so a
  captured request cannot be played again. Several ``v1`` entries are allowed (a sender rolling
  its secret signs with both).
- ``konvo_legacy``: ``X-Konvo-Signature`` = hex HMAC-SHA256 of the raw body (``sha256=`` prefix
  allowed, in any case). No timestamp, so no replay protection beyond the idempotency key:
  what triggers created before the timestamped scheme keep using. Such a trigger takes the
  timestamped header too (checked as ``konvo``), so its senders can move over one at a time.
- ``shopify``: ``X-Shopify-Hmac-Sha256`` = base64 HMAC-SHA256 of the raw body (replays are
  deduplicated by ``X-Shopify-Webhook-Id``).
- ``token``: ``X-Konvo-Token`` (or ``Authorization: Bearer``) equal to the secret, for senders
  that cannot sign.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

KONVO_HEADER = "x-konvo-signature"
SHOPIFY_HEADER = "x-shopify-hmac-sha256"
TOKEN_HEADER = "x-konvo-token"
SCHEMES = ("konvo", "konvo_legacy", "shopify", "token")
TOLERANCE_SECONDS = 300
LEGACY_PREFIX = "sha256="
_MAX_V1 = 8  # signatures tried per request: a sender rolling its secret sends two


@dataclass(frozen=True)
class Verdict:
    """``problem``: why the request is refused (said in the 401, never the secret), None if authentic.

    ``replay_key``: for timestamped signatures, what identifies this signed request; its second
    use inside the tolerance window is a replay.
    """

    problem: str | None = None
    replay_key: str | None = None


def scheme_of(trigger: dict[str, Any]) -> str:
    """The scheme a stored trigger's requests are checked with.

    Triggers keep the scheme they were created with. Those stored before timestamps existed
    have no ``signature_scheme``; their ``konvo`` meant the body-only HMAC their senders compute.
    """
    stored = trigger.get("signature_scheme")
    if stored in SCHEMES:
        return str(stored)
    declared = (trigger.get("mapping") or {}).get("signature") or "konvo"
    return "konvo_legacy" if declared == "konvo" else str(declared)


def konvo_signature(secret: str, body: bytes) -> str:
    """The legacy signature: hex HMAC-SHA256 of the body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def timestamped_signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``v1`` value: hex HMAC-SHA256 of ``"<timestamp>.<body>"`` (exact bytes)."""
    return hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def konvo_header(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Konvo-Signature`` value a sender writes for ``body`` at ``timestamp`` (Unix seconds)."""
    return f"t={timestamp},v1={timestamped_signature(secret, timestamp, body)}"


def shopify_signature(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def verify(scheme: str, secret: str, body: bytes, headers: Mapping[str, str], now: float) -> Verdict:
    """Whether the request is authentic under ``scheme``; ``now`` in Unix seconds (the injected clock)."""
    if scheme == "shopify":
        given = headers.get(SHOPIFY_HEADER)
        if not given:
            return Verdict("missing X-Shopify-Hmac-Sha256 header")
        ok = hmac.compare_digest(given.strip().encode(), shopify_signature(secret, body).encode())
        return Verdict(None if ok else "X-Shopify-Hmac-Sha256 does not match the body")
    if scheme == "token":
        given = headers.get(TOKEN_HEADER)
        if not given:
            auth = headers.get("authorization", "")
            given = auth[7:] if auth.lower().startswith("bearer ") else None
        if not given:
            return Verdict("missing X-Konvo-Token header")
        return Verdict(
            None if hmac.compare_digest(given.strip().encode(), secret.encode()) else "wrong token"
        )
    header = headers.get(KONVO_HEADER)
    if scheme == "konvo_legacy" and not (header and "v1=" in header.lower()):
        return _legacy(secret, body, header)
    return _timestamped(secret, body, header, now)


def _legacy(secret: str, body: bytes, header: str | None) -> Verdict:
    if not header:
        return Verdict(
            "missing X-Konvo-Signature header (hex HMAC-SHA256 of the body with the trigger secret)"
        )
    given = header.strip().lower().removeprefix(LEGACY_PREFIX)
    ok = hmac.compare_digest(given.encode(), konvo_signature(secret, body).encode())
    return Verdict(None if ok else "X-Konvo-Signature does not match the body")


_FORMAT = (
    "X-Konvo-Signature must be t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.<body>' with the trigger secret>"
)


def _timestamped(secret: str, body: bytes, header: str | None, now: float) -> Verdict:
    if not header:
        return Verdict(f"missing X-Konvo-Signature header: {_FORMAT}")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep:
            return Verdict(_FORMAT)
        if key == "t":
            if not value.isascii() or not value.isdigit() or len(value) > 12:
                return Verdict(f"X-Konvo-Signature: t must be Unix seconds; {_FORMAT}")
            timestamp = int(value)
        elif key == "v1" and len(candidates) < _MAX_V1:
            candidates.append(value.lower())
    if timestamp is None or not candidates:
        return Verdict(_FORMAT)
    expected = timestamped_signature(secret, timestamp, body).encode()
    matched = next((c for c in candidates if hmac.compare_digest(c.encode(), expected)), None)
    if matched is None:
        return Verdict("X-Konvo-Signature does not match the body and timestamp")
    if abs(now - timestamp) > TOLERANCE_SECONDS:
        return Verdict(
            f"X-Konvo-Signature timestamp is more than {TOLERANCE_SECONDS // 60} minutes from the "
            "server's time: sign each delivery when it is sent"
        )
    return Verdict(replay_key=matched)
