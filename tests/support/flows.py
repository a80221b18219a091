"""Flow documents used by several tests."""

from __future__ import annotations

from typing import Any


def skeleton_flow(name: str = "Skeleton", no_reply_after: str = "PT1S") -> dict[str, Any]:
    """A message with 2 buttons, a free-reply path and a no-reply branch, each tagging."""
    return {
        "name": name,
        "start": "ask",
        "nodes": [
            {
                "id": "ask",
                "type": "message",
                "text": "Hola {{contact.first_name}}, ¿te ayudamos?",
                "buttons": [
                    {"id": "yes", "title": "Sí, por favor", "next": "tag_yes"},
                    {"id": "no", "title": "No, gracias", "next": "tag_no"},
                ],
                "on_reply": "tag_reply",
                "no_reply": {"after": no_reply_after, "next": "tag_cold"},
            },
            {"id": "tag_yes", "type": "tag", "add": ["interested"], "next": None},
            {"id": "tag_no", "type": "tag", "add": ["not-interested"], "next": None},
            {"id": "tag_reply", "type": "tag", "add": ["wrote"], "next": None},
            {"id": "tag_cold", "type": "tag", "add": ["cold"], "next": None},
        ],
    }
