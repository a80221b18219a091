"""The demo workspace: created on first start, left as it is on later starts (idempotent).

It has the example catalog and flows (``examples/``) published, and the triggers that start them
(``examples/triggers.json``): "hola" starts the Welcome flow, "ofertas" the opt-in collection,
any other message VIP routing, and two webhook URLs the order update and the abandoned cart. The
triggers are created once (a workspace marker), so a trigger the user deleted stays deleted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

from server.clock import SystemClock
from server.config import Settings
from server.operations import agents as agent_ops
from server.operations import fields as field_ops
from server.operations import flows as flow_ops
from server.operations import tags as tag_ops
from server.operations import template_drafts as draft_ops
from server.operations.agents import AgentServices
from server.operations.fields import FieldServices
from server.operations.tags import TagServices
from server.operations.template_drafts import TemplateDraftServices
from server.runtime import Runtime
from server.store.workspaces import WorkspaceRepository, new_api_key
from server.triggers.inbound import InboundTriggerServices, create_inbound_trigger
from server.triggers.webhooks import WebhookTriggerServices, create_webhook_trigger

DEMO_WORKSPACE = "demo"
DEMO_TIMEZONE = "Europe/Madrid"
DEMO_LOCALE = "es-ES"
TRIGGERS_MARK = "demo_triggers_seeded"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class SeedServices(
    AgentServices,
    FieldServices,
    InboundTriggerServices,
    TagServices,
    TemplateDraftServices,
    WebhookTriggerServices,
    Protocol,
):
    """What seeding the example catalog and triggers uses."""

    @property
    def workspaces(self) -> WorkspaceRepository: ...


async def load_example_catalog(services: SeedServices, workspace_id: str) -> None:
    """Create the tags, fields, agents and templates the example flows use (skips existing ones)."""
    catalog = json.loads((EXAMPLES / "catalog.json").read_text())
    tags = {t["name"] for t in await tag_ops.list_tags(services, workspace_id)}
    for tag in catalog["tags"]:
        if tag["name"] not in tags:
            await tag_ops.create_tag(services, workspace_id, tag["name"], tag["kind"])
    fields = {f["name"] for f in await field_ops.list_fields(services, workspace_id)}
    for field in catalog["fields"]:
        if field["name"] not in fields:
            await field_ops.create_field(
                services, workspace_id, field["name"], field["type"], field.get("options")
            )
    agents = {a["email"] for a in await agent_ops.list_agents(services, workspace_id)}
    for agent in catalog["agents"]:
        if agent["email"] not in agents:
            await agent_ops.create_agent(services, workspace_id, agent["email"], agent["name"])
    templates = {(t["name"], t["language"]) for t in await draft_ops.list_templates(services, workspace_id)}
    for template in catalog["templates"]:
        if (template["name"], template["language"]) not in templates:
            await draft_ops.create_template(services, workspace_id, template)


def example_flows() -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted((EXAMPLES / "flows").glob("*.json"))]


async def load_example_triggers(services: SeedServices, workspace_id: str) -> None:
    """Create the triggers of ``examples/triggers.json`` once per workspace (the marker says so)."""
    workspace = await services.workspaces.get(workspace_id)
    if (workspace or {}).get(TRIGGERS_MARK):
        return
    triggers = json.loads((EXAMPLES / "triggers.json").read_text())
    flows = {f["name"]: f["_id"] for f in await services.flows.list(workspace_id)}
    inbound_flows = {t["flow_id"] for t in await services.inbound.list(workspace_id)}
    for rule in triggers["keywords"]:
        flow_id = flows.get(rule["flow"])
        if flow_id and flow_id not in inbound_flows:
            fields = {"kind": "KEYWORD", "keywords": rule["keywords"], "priority": rule.get("priority", 0)}
            await create_inbound_trigger(services, workspace_id, flow_id, fields)
    for rule in triggers["any_message"]:
        flow_id = flows.get(rule["flow"])
        if flow_id and flow_id not in inbound_flows:
            await create_inbound_trigger(services, workspace_id, flow_id, {"kind": "ANY_MESSAGE"})
    for hook in triggers["webhooks"]:
        flow_id = flows.get(hook["flow"])
        if flow_id and not await services.webhooks.exists_for_flow(workspace_id, flow_id):
            await create_webhook_trigger(services, workspace_id, flow_id, hook["mapping"])
    await services.workspaces.update(workspace_id, {TRIGGERS_MARK: True})


def _key_file(settings: Settings) -> Path:
    return settings.data_dir / "demo-api-key"


async def seed_demo(settings: Settings) -> str:
    """Ensure the demo workspace, its API key and example flows exist; return the key."""
    runtime = Runtime(settings)  # not started: its repositories and use cases suffice
    services = runtime.services
    clock = SystemClock()
    try:
        await services.database.ensure_indexes()
        now = clock.now()
        await services.workspaces.ensure(DEMO_WORKSPACE, "Demo shop", DEMO_TIMEZONE, now, DEMO_LOCALE)
        api_key = settings.demo_api_key or _stored_key(settings)
        if api_key is None or await services.workspaces.find_key(api_key) is None:
            api_key = api_key or new_api_key()
            await services.workspaces.add_key(DEMO_WORKSPACE, api_key, "ADMIN", "demo", now)
            _store_key(settings, api_key)
        await load_example_catalog(services, DEMO_WORKSPACE)
        for definition in example_flows():
            if await services.flows.get_by_name(DEMO_WORKSPACE, definition["name"]) is None:
                flow = await flow_ops.import_flow(services, DEMO_WORKSPACE, definition)
                issues = await flow_ops.flow_issues(services, DEMO_WORKSPACE, flow)
                if not [i for i in issues if i.severity == "ERROR"]:
                    await flow_ops.publish_flow(services, DEMO_WORKSPACE, flow["_id"])
        await load_example_triggers(services, DEMO_WORKSPACE)
        return api_key
    finally:
        await runtime.database.close()
        await runtime.arq.aclose()
        await runtime.redis.aclose()


def _stored_key(settings: Settings) -> str | None:
    path = _key_file(settings)
    return path.read_text().strip() if path.exists() else None


def _store_key(settings: Settings, api_key: str) -> None:
    path = _key_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(api_key + "\n")
    os.chmod(path, 0o600)
