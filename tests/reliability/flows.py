"""The flow the crash, Redis and replica tests drive: a wait for a reply, then a timer."""

from __future__ import annotations

from typing import Any


def wait_and_timer_flow(name: str = "Reliability", delay: str = "PT2S") -> dict[str, Any]:
    """Ask, wait for the reply (tag it), wait ``delay`` on a timer, then say goodbye."""
    return {
        "name": name,
        "start": "ask",
        "nodes": [
            {
                "id": "ask",
                "type": "message",
                "text": "¿Seguimos?",
                "on_reply": "got",
                "no_reply": {"after": "PT1H", "next": None},
            },
            {"id": "got", "type": "tag", "add": ["replied"], "next": "pause"},
            {"id": "pause", "type": "delay", "for": delay, "next": "bye"},
            {"id": "bye", "type": "message", "text": "Adiós", "next": None},
        ],
    }
