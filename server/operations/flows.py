"""Flow lifecycle: import, edit the draft, validate, publish a frozen version, archive."""

from __future__ import annotations

from typing import Any, Protocol

from server.channels.choice import chosen_channel_id
from server.clock import Clock
from server.errors import InvalidFlow, InvalidInput, NotFound
from server.ids import new_id
from server.machines.catalog import Catalog
from server.machines.definition import parse_flow
from server.machines.flow_checks.issues import FlowIssue
from server.machines.validator import validate
from server.operations import templates
from server.operations.catalog import CatalogServices, catalog_snapshot
from server.operations.flow_versions import activate_version
from server.operations.templates import TemplateServices
from server.store.channels import ChannelRepository
from server.store.flows import FlowRepository
from server.text_input import MAX_FLOW_NAME, checked_name


class FlowServices(Protocol):
    """Editing a flow: flows, channels and the clock."""

    @property
    def channels(self) -> ChannelRepository: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def flows(self) -> FlowRepository: ...


class PublishServices(CatalogServices, FlowServices, TemplateServices, Protocol):
    """Publishing a flow: validation against the catalog, template submission and version activation."""


def issues_of(definition: dict[str, Any], catalog: Catalog | None = None) -> list[FlowIssue]:
    """Parse errors and validator findings of a draft, as one list."""
    try:
        flow = parse_flow(definition)
    except InvalidFlow as exc:
        return [FlowIssue(exc.node_id, "ERROR", "INVALID_DOCUMENT", exc.message)]
    return validate(flow, catalog)


async def flow_issues(services: CatalogServices, workspace_id: str, flow: dict[str, Any]) -> list[FlowIssue]:
    """A flow's draft checked against what its workspace has (tags, fields, agents, templates)."""
    catalog = await catalog_snapshot(services, workspace_id, flow["_id"])
    return issues_of(flow["draft"], catalog)


async def import_flow(services: FlowServices, workspace_id: str, definition: Any) -> dict[str, Any]:
    """Store a new draft; a document that cannot be parsed at all is refused with its node id."""
    flow = parse_flow(definition)
    checked_name(flow.name, field="name", limit=MAX_FLOW_NAME, what="a flow name")
    if await services.flows.get_by_name(workspace_id, flow.name):
        raise InvalidInput(f"a flow called {flow.name!r} already exists; rename it or edit that one")
    now = services.clock.now()
    return await services.flows.insert(
        {
            "_id": new_id("flow"),
            "workspace_id": workspace_id,
            "name": flow.name,
            "status": "draft",
            "draft": definition,
            "active_version": None,
            "version_counter": 0,
            "created_at": now,
            "updated_at": now,
        }
    )


async def require_flow(services: FlowServices, workspace_id: str, flow_id: str) -> dict[str, Any]:
    flow = await services.flows.get(workspace_id, flow_id)
    if flow is None:
        raise NotFound(f"flow {flow_id} not found")
    return flow


async def update_draft(
    services: FlowServices, workspace_id: str, flow_id: str, definition: Any
) -> dict[str, Any]:
    flow = await require_flow(services, workspace_id, flow_id)
    parsed = parse_flow(definition)
    checked_name(parsed.name, field="name", limit=MAX_FLOW_NAME, what="a flow name")
    changes: dict[str, Any] = {"draft": definition, "updated_at": services.clock.now()}
    if parsed.name != flow["name"]:
        other = await services.flows.get_by_name(workspace_id, parsed.name)
        if other is not None and other["_id"] != flow_id:
            raise InvalidInput(f"a flow called {parsed.name!r} already exists")
        changes["name"] = parsed.name
    updated = await services.flows.update(workspace_id, flow_id, changes)
    assert updated is not None
    return updated


IN_FLIGHT_POLICIES = ("finish", "exit")


async def publish_flow(
    services: PublishServices, workspace_id: str, flow_id: str, in_flight: str = "finish"
) -> dict[str, Any]:
    """Freeze the draft as version N and make it the one new runs start on.

    ``in_flight`` says what happens to runs under way on older versions: ``finish`` lets them
    finish on the version they started on; ``exit`` ends them (reason ``version_replaced``).
    """
    if in_flight not in IN_FLIGHT_POLICIES:
        raise InvalidInput(f"inFlight must be one of {', '.join(IN_FLIGHT_POLICIES)}", field="inFlight")
    flow = await require_flow(services, workspace_id, flow_id)
    errors = [i for i in await flow_issues(services, workspace_id, flow) if i.severity == "ERROR"]
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more; see validateFlow)" if len(errors) > 1 else ""
        raise InvalidFlow(
            f"{first.code}: {first.message}{more}", node_id=first.node_id, issues=[i.code for i in errors]
        )
    waiting: list[dict[str, Any]] = []
    if await services.channels.for_workspace(workspace_id) is not None:
        # On WhatsApp only approved templates can be sent: submit the flow's drafts (and fixed
        # rejections) first, so a template Meta refuses outright fails the publish with its reason.
        waiting = await templates.unapproved_templates(services, workspace_id, flow["draft"])
        for template in waiting:
            if template["status"] in templates.SUBMITTABLE:
                await templates.submit_template(services, workspace_id, template["_id"])
        waiting = await templates.unapproved_templates(services, workspace_id, flow["draft"])
    now = services.clock.now()
    version = await services.flows.next_version(workspace_id, flow_id, now)
    await services.flows.insert_version(
        {
            "_id": f"{flow_id}:{version}",
            "flow_id": flow_id,
            "workspace_id": workspace_id,
            "version": version,
            "definition": flow["draft"],
            "published_at": now,
        }
    )
    if waiting:
        # Until Meta approves, an already active version keeps serving new runs; a first version
        # leaves the flow waiting (see ``templates.refresh_waiting_flows``).
        state = templates.waiting_state(waiting)
        changes = {
            "pending_version": version,
            "pending_in_flight": in_flight,
            "pending_status": state,
            "updated_at": now,
        }
        if not flow.get("active_version"):
            changes["status"] = state
        updated = await services.flows.update(workspace_id, flow_id, changes)
        assert updated is not None
        return updated
    return await activate_version(services, workspace_id, flow_id, version, in_flight)


async def archive_flow(services: FlowServices, workspace_id: str, flow_id: str) -> dict[str, Any]:
    await require_flow(services, workspace_id, flow_id)
    updated = await services.flows.update(
        workspace_id, flow_id, {"status": "archived", "updated_at": services.clock.now()}
    )
    assert updated is not None
    return updated


async def set_flow_channel(
    services: FlowServices, workspace_id: str, flow_id: str, channel_id: str | None
) -> dict[str, Any]:
    """The number the flow's runs talk through (None: the workspace's default channel).

    Runs already under way keep the channel they started with (docs/channels.md).
    """
    await require_flow(services, workspace_id, flow_id)
    checked = await chosen_channel_id(services.channels, workspace_id, channel_id)
    updated = await services.flows.update(
        workspace_id, flow_id, {"channel_id": checked, "updated_at": services.clock.now()}
    )
    assert updated is not None
    return updated
