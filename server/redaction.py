"""Keeping secrets out of the log: which names are sensitive, and redacting values under them.

One rule for every place that logs something a caller sent: GraphQL arguments and variables
(``server/graphql/redaction.py``), query strings of access-log lines (Meta's verify handshake
sends ``hub.verify_token``). A name is sensitive when it speaks of a token, secret, password,
credential, authorization or signature, or ends in "key" (apiKey, privateKey, key); redacting a
harmless value by mistake costs nothing, logging a token costs a tenant its account.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode

REDACTED = "[redacted]"
_WORDS = ("token", "secret", "password", "passwd", "credential", "authorization", "signature")
_SEPARATORS = re.compile(r"[^a-z0-9]")


def is_sensitive(name: str) -> bool:
    normalized = _SEPARATORS.sub("", name.lower())
    return normalized.endswith("key") or any(word in normalized for word in _WORDS)


def redact_value(value: Any) -> Any:
    """``value`` with whatever sits under a sensitive key replaced, at any depth."""
    if isinstance(value, dict):
        return {k: REDACTED if is_sensitive(str(k)) else redact_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_value(item) for item in value]
    return value


def redact_query_string(query: str) -> str:
    """``a=1&hub.verify_token=x`` -> ``a=1&hub.verify_token=[redacted]``."""
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(is_sensitive(name) for name, _ in pairs):
        return query
    return urlencode([(name, REDACTED if is_sensitive(name) else value) for name, value in pairs], safe="[]")


def redact_path(path: str) -> str:
    """A request path with its query string redacted."""
    base, mark, query = path.partition("?")
    return f"{base}?{redact_query_string(query)}" if mark else path


class AccessLogRedaction(logging.Filter):
    """uvicorn's access lines (``client, method, path, version, status``) without secrets in paths."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], redact_path(args[2]), *args[3:])
        return True


def configure_logging(level: str) -> None:
    """The server's own log for ``konvo serve``: one line per record on stderr at ``level``.

    httpx's per-request INFO lines are left out: they carry full URLs, and Meta's ``paging.next``
    URLs carry the access token (``server/egress.py`` logs origins only). So are arq's per-job INFO
    lines, which print job arguments (phone numbers).
    """
    root = logging.getLogger()
    if not any(getattr(handler, "_konvo", False) for handler in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._konvo = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "arq"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, AccessLogRedaction) for f in access.filters):
        access.addFilter(AccessLogRedaction())
