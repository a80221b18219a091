"""Authenticating webhook requests against the trigger's secret, in constant time.

``konvo``: ``X-Konvo-Signature`` = hex HMAC-SHA256 of the raw body (``sha256=`` prefix allowed).
``shopify``: ``X-Shopify-Hmac-Sha256`` = base64 HMAC-SHA256 of the raw body.
``token``: ``X-Konvo-Token`` (or ``Authorization: Bearer``) equal to the secret, for senders
that cannot sign.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

KONVO_HEADER = "x-konvo-signature"
SHOPIFY_HEADER = "x-shopify-hmac-sha256"
TOKEN_HEADER = "x-konvo-token"


def konvo_signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def shopify_signature(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def verify(scheme: str, secret: str, body: bytes, headers: Mapping[str, str]) -> str | None:
    """None when the request is authentic, else why not (said in the 401, never the secret)."""
    if scheme == "shopify":
        given = headers.get(SHOPIFY_HEADER)
        if not given:
            return "missing X-Shopify-Hmac-Sha256 header"
        ok = hmac.compare_digest(given.strip().encode(), shopify_signature(secret, body).encode())
        return None if ok else "X-Shopify-Hmac-Sha256 does not match the body"
    if scheme == "token":
        given = headers.get(TOKEN_HEADER)
        if not given:
            auth = headers.get("authorization", "")
            given = auth[7:] if auth.lower().startswith("bearer ") else None
        if not given:
            return "missing X-Konvo-Token header"
        return None if hmac.compare_digest(given.strip().encode(), secret.encode()) else "wrong token"
    given = headers.get(KONVO_HEADER)
    if not given:
        return "missing X-Konvo-Signature header (hex HMAC-SHA256 of the body with the trigger secret)"
    given = given.strip().removeprefix("sha256=").lower()
    ok = hmac.compare_digest(given.encode(), konvo_signature(secret, body).encode())
    return None if ok else "X-Konvo-Signature does not match the body"
