"""Keep tests' outbound traffic on loopback, through the product's own egress setting.

Test runtimes allow loopback with ``KONVO_EGRESS_ALLOW`` (as the embedded dev setup does) and
resolve names from a table of their own (``HostsResolver``), so a test that connects a WhatsApp
number or Klaviyo with made-up or default settings never sends a DNS query or a request off the
machine: a name outside the table does not resolve, like an unknown host.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping

from server.egress import EgressAllowList, EgressPolicy

LOOPBACK_ALLOW = "localhost,127.0.0.0/8,::1"


class HostsResolver:
    """Answers names from a table (like ``/etc/hosts``); anything else does not resolve."""

    def __init__(self, table: Mapping[str, list[str]] | None = None) -> None:
        self.table = {"localhost": ["127.0.0.1"], **(table or {})}
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        name = host.lower().rstrip(".")
        self.asked.append(name)
        try:
            return list(self.table[name])
        except KeyError:
            raise socket.gaierror(socket.EAI_NONAME, f"{name} is not in the test's hosts table") from None


def loopback_egress(table: Mapping[str, list[str]] | None = None) -> EgressPolicy:
    """The egress policy of a test client built without a runtime: loopback allowed, names from a table."""
    return EgressPolicy(EgressAllowList.parse(LOOPBACK_ALLOW), HostsResolver(table))
