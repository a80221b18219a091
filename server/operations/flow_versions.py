"""Which version of a flow new runs start on: activating one (at publish, or once Meta approved
the templates it waits for), ending the runs of older versions when asked to, and the documents
in use (draft and active version) that "which flows use this name" questions read.

Its own module because both publishing (``flows``) and template reviews (``templates``) activate
versions, and ``flows`` already asks ``templates`` what a version waits for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from server.actors.events import EndFlowRuns
from server.clock import Clock
from server.ids import ContactKey, new_id
from server.services import ActorsHandle
from server.store.contacts import ContactRepository
from server.store.flows import FlowRepository


class FlowVersionServices(Protocol):
    """Activating a flow version and ending older runs: flows, contacts and their actors."""

    @property
    def actors(self) -> ActorsHandle: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def contacts(self) -> ContactRepository: ...

    @property
    def flows(self) -> FlowRepository: ...


async def activate_version(
    services: FlowVersionServices, workspace_id: str, flow_id: str, version: int, in_flight: str = "finish"
) -> dict[str, Any]:
    """Make ``version`` the one new runs start on (at publish, or once its templates are approved)."""
    updated = await services.flows.update(
        workspace_id,
        flow_id,
        {
            "status": "active",
            "active_version": version,
            "pending_version": None,
            "pending_in_flight": None,
            "pending_status": None,
            "updated_at": services.clock.now(),
        },
    )
    assert updated is not None
    if in_flight == "exit":
        await end_older_runs(services, workspace_id, flow_id, version)
    return updated


async def end_older_runs(services: FlowVersionServices, workspace_id: str, flow_id: str, version: int) -> int:
    """Ask every contact still running an older version of the flow to end that run."""
    pending = [
        services.actors.tell(
            ContactKey.from_doc_id(contact_id),
            EndFlowRuns(new_id("evt"), flow_id, version),
        )
        async for contact_id in services.contacts.keys_with_active_runs(workspace_id, flow_id, version)
    ]
    await asyncio.gather(*pending)
    return len(pending)


async def definitions_in_use(services: FlowVersionServices, flow: dict[str, Any]) -> list[Any]:
    """The flow's draft and, when a version is active, that version's document: what will run
    once published and what runs now. Raw (as stored): a draft that does not parse counts too."""
    definitions = [flow.get("draft")]
    if flow.get("active_version"):
        version = await services.flows.get_version(flow["_id"], flow["active_version"])
        if version is not None:
            definitions.append(version.get("definition"))
    return definitions


async def flows_using(
    services: FlowVersionServices, workspace_id: str, uses: Callable[[Any], bool]
) -> list[str]:
    """Names of the workspace's flows whose draft or active version ``uses`` (a tag, team, agent...)."""
    using: list[str] = []
    for flow in await services.flows.list(workspace_id):
        if any(uses(definition) for definition in await definitions_in_use(services, flow)):
            using.append(flow["name"])
    return using
