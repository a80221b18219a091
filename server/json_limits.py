"""How deep a JSON text nests, found by a cheap scan before ``json.loads`` builds anything.

A body size cap does not bound parsing: a 200k-deep ``[[[[...`` is small, yet it recurses the
decoder (``RecursionError`` -> 500) and every later walk over the value. Every edge that parses
client JSON calls ``check_json_depth`` first and answers its own "bad request" (HTTP 400,
WebSocket close 4400) with the error's message::

    try:
        check_json_depth(body, settings.max_json_depth)
    except JsonTooDeep as exc:
        return <400 with str(exc)>
    payload = json.loads(body)

The scan drops string literals (so brackets inside strings do not count) and sums the brackets
left, at C speed: linear in the size, which the body-size and frame-size limits already bound.
It never accepts less than ``json.loads`` would reject: invalid JSON still fails when parsed.
"""

from __future__ import annotations

import re
from itertools import accumulate

_STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = tuple(1 if b in b"[{" else -1 if b in b"]}" else 0 for b in range(256))
_CHUNK = 1 << 16


class JsonTooDeep(ValueError):
    """The JSON text nests arrays/objects deeper than allowed."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"JSON nested deeper than {limit} levels of arrays/objects")
        self.limit = limit


def json_depth(data: bytes | str, stop_above: int | None = None) -> int:
    """The deepest array/object nesting of ``data`` (0 for a scalar); stops counting once past
    ``stop_above``, so a hostile text costs no more than the scan up to that point."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    brackets = _STRINGS.sub(b"", raw).translate(None, _NOT_BRACKETS)
    level = deepest = 0
    for start in range(0, len(brackets), _CHUNK):
        levels = list(accumulate(map(_STEP.__getitem__, brackets[start : start + _CHUNK]), initial=level))
        deepest = max(deepest, max(levels))
        level = levels[-1]
        if stop_above is not None and deepest > stop_above:
            break
    return deepest


def check_json_depth(data: bytes | str, max_depth: int) -> None:
    """Raise ``JsonTooDeep`` when ``data`` nests deeper than ``max_depth``."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if raw.count(b"[") + raw.count(b"{") <= max_depth:
        return  # cannot nest deeper than it has brackets: most requests stop here
    if json_depth(raw, stop_above=max_depth) > max_depth:
        raise JsonTooDeep(max_depth)
