"""Inbound triggers: which flow a customer's message starts when no run is waiting for a reply.

Pure matching over a workspace's rules (no I/O), so the contact actor can ask it in its turn.
Keywords match case- and accent-insensitively ("Precio" = "PRECIÓ") with punctuation ignored;
``CONTAINS`` matches the keyword as whole words anywhere in the message. Rules are tried by
priority (highest first), then oldest first; an ``ANY_MESSAGE`` rule takes every message.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from server.machines.replies import comparable

KINDS = ("KEYWORD", "ANY_MESSAGE")
MATCHES = ("EXACT", "CONTAINS")


def normalize(text: str) -> str:
    """``"¡Hola,  SEÑOR!"`` -> ``"hola senor"``: compared as button titles are (``replies.comparable``)."""
    return comparable(text)


@dataclass(frozen=True)
class InboundRule:
    id: str
    flow_id: str
    kind: str
    match: str
    keywords: tuple[str, ...]
    priority: int

    def matches(self, text: str | None) -> str | None:
        """The keyword that matched (``""`` for a catch-all), or None."""
        if self.kind == "ANY_MESSAGE":
            return ""
        if not text:
            return None
        said = normalize(text)
        padded = f" {said} "
        for keyword in self.keywords:
            if said == keyword or (self.match == "CONTAINS" and f" {keyword} " in padded):
                return keyword
        return None


def compile_rules(documents: Iterable[dict[str, Any]]) -> list[InboundRule]:
    """Enabled rules in the order they are tried (``documents`` oldest first)."""
    rules = [
        InboundRule(
            id=d["_id"],
            flow_id=d["flow_id"],
            kind=d["kind"],
            match=d.get("match") or "EXACT",
            keywords=tuple(normalize(k) for k in d.get("keywords") or []),
            priority=int(d.get("priority") or 0),
        )
        for d in documents
        if d.get("enabled", True)
    ]
    rules.sort(key=lambda r: -r.priority)  # stable: equal priorities keep the documents' order
    return rules


def pick(rules: Sequence[InboundRule], text: str | None) -> tuple[str, dict[str, Any]] | None:
    """The flow to start and its ``{{trigger.*}}`` values, or None when no rule takes the message."""
    for rule in rules:
        keyword = rule.matches(text)
        if keyword is not None:
            trigger: dict[str, Any] = {"inbound_trigger": rule.id, "text": text}
            if keyword:
                trigger["keyword"] = keyword
            return rule.flow_id, trigger
    return None
