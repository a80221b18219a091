"""Inbound trigger use cases: create, change and delete keyword / catch-all triggers of a workspace.

Each change clears this process's cache of the workspace's rules at once (other processes see it
within ``workspace_caches.TTL_SECONDS``).
"""

from __future__ import annotations

from typing import Any, Protocol

from server.clock import Clock
from server.errors import InvalidInput, NotFound
from server.ids import new_id
from server.machines.keywords import KINDS, MATCHES, normalize
from server.store.flows import FlowRepository
from server.store.triggers import InboundTriggerRepository
from server.workspace_caches import WorkspaceCaches

MAX_KEYWORDS = 50
MAX_KEYWORD = 100


class InboundTriggerServices(Protocol):
    """What the inbound trigger use cases read and change."""

    @property
    def caches(self) -> WorkspaceCaches: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def flows(self) -> FlowRepository: ...

    @property
    def inbound(self) -> InboundTriggerRepository: ...


def _clean(changes: dict[str, Any]) -> dict[str, Any]:
    """Check and normalise the fields given (others untouched); errors name the field."""
    out: dict[str, Any] = {}
    if "kind" in changes:
        if changes["kind"] not in KINDS:
            raise InvalidInput(f"kind must be one of {', '.join(KINDS)}", field="kind")
        out["kind"] = changes["kind"]
    if "match" in changes:
        if changes["match"] not in MATCHES:
            raise InvalidInput(f"match must be one of {', '.join(MATCHES)}", field="match")
        out["match"] = changes["match"]
    if "keywords" in changes:
        keywords = [k.strip() for k in changes["keywords"] or [] if isinstance(k, str) and k.strip()]
        if len(keywords) > MAX_KEYWORDS:
            raise InvalidInput(f"at most {MAX_KEYWORDS} keywords per trigger", field="keywords")
        for keyword in keywords:
            if len(keyword) > MAX_KEYWORD or not normalize(keyword):
                raise InvalidInput(
                    f"keyword {keyword!r} must have letters or digits and at most {MAX_KEYWORD} characters",
                    field="keywords",
                )
        out["keywords"] = keywords
    if "priority" in changes:
        out["priority"] = int(changes["priority"] or 0)
    if "enabled" in changes:
        out["enabled"] = bool(changes["enabled"])
    return out


async def _check_flow(services: InboundTriggerServices, workspace_id: str, flow_id: str) -> None:
    if await services.flows.get(workspace_id, flow_id) is None:
        raise NotFound(f"flow {flow_id} not found", field="flowId")


async def create_inbound_trigger(
    services: InboundTriggerServices, workspace_id: str, flow_id: str, fields: dict[str, Any]
) -> dict[str, Any]:
    await _check_flow(services, workspace_id, flow_id)
    document = {"kind": "KEYWORD", "match": "EXACT", "keywords": [], "priority": 0, "enabled": True}
    document |= _clean(fields)
    if document["kind"] == "KEYWORD" and not document["keywords"]:
        raise InvalidInput("a KEYWORD trigger needs at least one keyword", field="keywords")
    document |= {
        "_id": new_id("itr"),
        "workspace_id": workspace_id,
        "flow_id": flow_id,
        "created_at": services.clock.now(),
    }
    await services.inbound.insert(document)
    services.caches.forget_rules(workspace_id)
    return document


async def update_inbound_trigger(
    services: InboundTriggerServices, workspace_id: str, trigger_id: str, fields: dict[str, Any]
) -> dict[str, Any]:
    current = await services.inbound.get(workspace_id, trigger_id)
    if current is None:
        raise NotFound(f"inbound trigger {trigger_id} not found")
    changes = _clean(fields)
    if "flow_id" in fields and fields["flow_id"] is not None:
        await _check_flow(services, workspace_id, fields["flow_id"])
        changes["flow_id"] = fields["flow_id"]
    merged = {**current, **changes}
    if merged["kind"] == "KEYWORD" and not merged["keywords"]:
        raise InvalidInput("a KEYWORD trigger needs at least one keyword", field="keywords")
    updated = await services.inbound.update(workspace_id, trigger_id, changes) if changes else current
    services.caches.forget_rules(workspace_id)
    assert updated is not None
    return updated


async def delete_inbound_trigger(
    services: InboundTriggerServices, workspace_id: str, trigger_id: str
) -> bool:
    if not await services.inbound.delete(workspace_id, trigger_id):
        raise NotFound(f"inbound trigger {trigger_id} not found")
    services.caches.forget_rules(workspace_id)
    return True
