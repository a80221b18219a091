"""The workspace catalog as the flow validator sees it: one snapshot of every name a flow may use
(tags, fields, agents, teams, templates, flows and what each connects to), read from the store.

The catalog's entries have their own use cases: ``tags.py``, ``fields.py``, ``agents.py`` and
``template_drafts.py``.
"""

from __future__ import annotations

from typing import Any, Protocol

from server.clock import Clock
from server.machines.catalog import Catalog, TemplateSummary, summarize_template
from server.machines.connections import ConnectionMemo
from server.store.catalog import AgentRepository, FieldRepository, TagRepository, TemplateRepository
from server.store.channels import ChannelRepository
from server.store.flows import FlowRepository
from server.store.teams import TeamRepository
from server.store.triggers import WebhookTriggerRepository
from server.workspace_caches import WorkspaceCaches


class CatalogServices(Protocol):
    """Every repository a catalog snapshot reads, and the connection-loop memo."""

    @property
    def agents(self) -> AgentRepository: ...

    @property
    def caches(self) -> WorkspaceCaches: ...

    @property
    def channels(self) -> ChannelRepository: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def fields(self) -> FieldRepository: ...

    @property
    def flow_connections(self) -> ConnectionMemo: ...

    @property
    def flows(self) -> FlowRepository: ...

    @property
    def tags(self) -> TagRepository: ...

    @property
    def teams(self) -> TeamRepository: ...

    @property
    def templates(self) -> TemplateRepository: ...

    @property
    def webhooks(self) -> WebhookTriggerRepository: ...


async def catalog_snapshot(
    services: CatalogServices, workspace_id: str, flow_id: str | None = None
) -> Catalog:
    """What the workspace has; with ``flow_id``, also whether a webhook trigger starts that flow."""
    tags = await services.tags.list(workspace_id)
    fields = await services.fields.list(workspace_id)
    agents = await services.agents.list(workspace_id)
    templates: dict[str, list[TemplateSummary]] = {}
    for document in await services.templates.list(workspace_id):
        templates.setdefault(document["name"], []).append(summarize_template(document))
    flows = await services.flows.list(workspace_id)
    return Catalog(
        tags={t["name"]: t["kind"] for t in tags},
        fields={f["name"]: (f["type"], tuple(f.get("options") or ())) for f in fields},
        agents=frozenset([a["_id"] for a in agents] + [a["email"] for a in agents]),
        templates=templates,
        flows=frozenset(f["name"] for f in flows),
        teams=frozenset(
            [t for a in agents for t in a.get("teams") or []]
            + [t["name"] for t in await services.teams.list(workspace_id)]
        ),
        starts_from_webhook=flow_id is not None
        and await services.webhooks.exists_for_flow(workspace_id, flow_id),
        sandbox=await services.channels.for_workspace(workspace_id) is None,
        connects=await instant_connections_of(services, flows),
        now=services.clock.now(),
        timezone=await services.caches.timezone_of(workspace_id),
    )


async def instant_connections_of(
    services: CatalogServices, flows: list[dict[str, Any]]
) -> dict[str, frozenset[str]]:
    """Which flows each flow connects to before any wait, in its draft or in its active version.

    Both count: the active version is what runs now, the draft what will run once published.
    Archived flows start nothing; a document that does not parse connects to nothing. Each
    document is parsed once per process (``services.flow_connections``).
    """
    memo = services.flow_connections
    live = [f for f in flows if f.get("status") != "archived"]
    active = [(f["_id"], f["active_version"]) for f in live if f.get("active_version")]
    versions = await services.flows.get_versions([key for key in active if not memo.known(("version", *key))])
    found: dict[str, frozenset[str]] = {}
    for flow in live:
        targets = memo.targets(("draft", flow["_id"], flow.get("updated_at")), flow.get("draft"))
        key: tuple[str, int] = (flow["_id"], flow.get("active_version") or 0)
        if key[1]:
            stored = versions.get(key)
            targets |= memo.targets(("version", *key), stored.get("definition") if stored else None)
        found[flow["name"]] = targets
    return found
