"""Which flows each stored flow document connects to before any wait, remembered per document.

Validating one flow checks connection loops against every other flow of its workspace, and
parsing them all each time costs ~10 ms per 100-node flow. A draft is remembered by its
``updated_at`` (every edit sets it) and a published version for good (it never changes), so
each document is parsed once per process; an LRU bounds memory.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from server.errors import InvalidFlow
from server.machines.definition import parse_flow
from server.machines.flow_checks.graph import instant_connections


class ConnectionMemo:
    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._known: OrderedDict[Hashable, frozenset[str]] = OrderedDict()

    def targets(self, key: Hashable, document: object) -> frozenset[str]:
        """The flow names ``document`` connects to before any wait (none if it does not parse)."""
        found = self._known.get(key)
        if found is not None:
            self._known.move_to_end(key)
            return found
        try:
            found = frozenset(instant_connections(parse_flow(document)))
        except InvalidFlow:
            found = frozenset()
        self._known[key] = found
        if len(self._known) > self._capacity:
            self._known.popitem(last=False)
        return found

    def known(self, key: Hashable) -> bool:
        return key in self._known
