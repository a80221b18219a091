"""Meta's webhook signature: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>``.

The HMAC key is the app secret of the Meta app that owns the webhook subscription. It must be
computed over the exact bytes received (not re-serialised JSON), and compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac

HEADER = "X-Hub-Signature-256"
PREFIX = "sha256="


def signature_for(body: bytes, app_secret: str) -> str:
    """The header value Meta sends for ``body``; tests use it to sign fixtures."""
    digest = hmac.new(app_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return PREFIX + digest


def signature_valid(body: bytes, app_secret: str | None, header: str | None) -> bool:
    """True only when ``header`` is the signature of ``body``; a channel without a secret accepts nothing."""
    if not app_secret or not header:
        return False
    given = header.strip().lower()
    if not given.startswith(PREFIX):
        return False
    return hmac.compare_digest(signature_for(body, app_secret).encode(), given.encode())
