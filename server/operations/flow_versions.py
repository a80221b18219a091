"""Which version of a flow new runs start on: activating one (at publish, or once Meta approved
the templates it waits for), and ending the runs of older versions when asked to.

Its own module because both publishing (``flows``) and template reviews (``templates``) activate
versions, and ``flows`` already asks ``templates`` what a version waits for.
"""

from __future__ import annotations

import asyncio
from typing import Any

from server.actors.events import EndFlowRuns
from server.ids import ContactKey, new_id
from server.services import Services


async def activate_version(
    services: Services, workspace_id: str, flow_id: str, version: int, in_flight: str = "finish"
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


async def end_older_runs(services: Services, workspace_id: str, flow_id: str, version: int) -> int:
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
