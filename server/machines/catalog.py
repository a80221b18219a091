"""What a workspace's flows may refer to (tags, fields, agents, teams, templates, other flows),
read once so that validating a flow is pure and fast; and the summary of a stored template
that validation, the turn's extras and the API read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from server.channels.whatsapp.template_message import parameter_count


@dataclass(frozen=True)
class ButtonSummary:
    type: str  # QUICK_REPLY | URL | PHONE_NUMBER | COPY_CODE
    text: str | None


@dataclass(frozen=True)
class TemplateSummary:
    language: str
    category: str
    status: str
    buttons: tuple[ButtonSummary, ...] = ()
    body_params: int = 0  # highest {{n}} in the body: how many body parameters a send needs
    rejection_reason: str | None = None  # Meta's reason when REJECTED (shown on the flow's node)
    components: tuple[dict[str, Any], ...] = ()  # as stored: what a node's params are checked against
    meta_id: str | None = None  # set once Meta has seen the template

    @property
    def quick_replies(self) -> tuple[str, ...]:
        return tuple(b.text or "" for b in self.buttons if b.type == "QUICK_REPLY")


@dataclass(frozen=True)
class Catalog:
    """What the workspace has, so names used by a flow can be checked without the store.

    ``fields`` maps a field name to ``(type, options)`` with type TEXT|NUMBER|BOOLEAN|DATE|FIXED;
    ``templates`` maps a name to its language variants (``summarize_template`` of each stored
    template: when ``components`` are known a node's ``params`` are checked against them);
    ``agents`` holds agent e-mails (lower-case) and ids; ``flows`` the names and ids of the
    workspace's other flows; ``flow_id`` is this flow's own id (so a ``connect_flow`` to it is
    recognised as a self-connection, not an unknown flow); ``connects`` maps other flows' names to
    the flows they connect to before any wait (draft or active version), for connection loops.
    """

    tags: dict[str, str] = field(default_factory=dict)  # name -> MARKETING|SUPPORT
    fields: dict[str, tuple[str, Sequence[str]]] = field(default_factory=dict)  # name -> (type, options)
    agents: frozenset[str] = frozenset()
    teams: frozenset[str] = frozenset()  # agent team names (for assign by team)
    templates: dict[str, list[TemplateSummary]] = field(default_factory=dict)  # name -> per language
    flows: frozenset[str] = frozenset()
    starts_from_webhook: bool = False  # a webhook trigger starts the flow being checked
    flow_id: str | None = None
    sandbox: bool = False  # no WhatsApp number connected: templates are sent unreviewed, by the sandbox
    connects: dict[str, frozenset[str]] = field(default_factory=dict)
    now: datetime | None = None  # when the check runs: a delay until a past moment is flagged
    timezone: str = "UTC"  # the workspace's, for delays written without an offset

    def has_agent(self, id_or_email: str) -> bool:
        return id_or_email in self.agents or id_or_email.strip().lower() in self.agents

    def template(self, name: str, language: str) -> TemplateSummary | None:
        return next((t for t in self.templates.get(name, []) if t.language == language), None)


def summarize_template(document: dict[str, Any]) -> TemplateSummary:
    buttons: list[ButtonSummary] = []
    body_params = 0
    for component in document.get("components") or []:
        if component.get("type") == "BUTTONS":
            buttons.extend(ButtonSummary(b["type"], b.get("text")) for b in component.get("buttons") or [])
        elif component.get("type") == "BODY":
            body_params = parameter_count(component.get("text"))
    return TemplateSummary(
        language=document["language"],
        category=document["category"],
        status=document["status"],
        buttons=tuple(buttons),
        body_params=body_params,
        rejection_reason=document.get("rejection_reason"),
        components=tuple(document.get("components") or ()),
        meta_id=document.get("meta_id"),
    )
