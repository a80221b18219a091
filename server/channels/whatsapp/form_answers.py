"""A WhatsApp Flow's answer (``nfm_reply.response_json``) read into what flows keep of it.

One reading for both edges that bring answers in (Meta's webhook, the sandbox's
``sandboxInbound``): a JSON object of the form's fields, nested a few levels at most (a form's
fields hold values and lists of chosen options), with field names a document store keeps as
they are (no ``.``, no leading ``$``, no NUL). An answer that is not one is kept with why, never
refused: the run treats it as an answer that does not fit, and Meta would retry a refused
webhook for days.
"""

from __future__ import annotations

import json
from typing import Any

from server.json_limits import JsonTooDeep, check_json_depth, json_depth

MAX_DEPTH = 8


def read_form_answer(raw: Any) -> tuple[dict[str, Any] | None, str | None]:
    """``(fields, None)`` for a readable answer, else ``(None, why)``; ``raw`` is the JSON text
    Meta sends, or an already decoded object (the sandbox)."""
    if isinstance(raw, str):
        try:
            check_json_depth(raw, MAX_DEPTH)
            raw = json.loads(raw)
        except (JsonTooDeep, ValueError) as exc:
            return None, f"the form's answer is not JSON of its fields: {exc}"
    elif isinstance(raw, dict) and json_depth(json.dumps(raw), stop_above=MAX_DEPTH) > MAX_DEPTH:
        return None, f"the form's answer nests deeper than {MAX_DEPTH} levels"
    if not isinstance(raw, dict):
        return None, "the form's answer must be a JSON object of its fields"
    bad = _bad_name(raw)
    if bad is not None:
        return (
            None,
            f"the form's answer has a field named {bad!r}; "
            "names may not hold '.', start with '$' or be empty",
        )
    return raw, None


def _bad_name(value: Any) -> str | None:
    if isinstance(value, dict):
        for key, inner in value.items():
            if not isinstance(key, str) or not key or "." in key or key.startswith("$") or "\x00" in key:
                return str(key)
            found = _bad_name(inner)
            if found is not None:
                return found
    elif isinstance(value, list):
        for inner in value:
            found = _bad_name(inner)
            if found is not None:
                return found
    return None
