"""Cost estimates before activating a flow (and, later, a broadcast): Meta's rate card per template node."""

from __future__ import annotations

from typing import Any, Protocol

from server.channels.whatsapp.costs import country_of, load_rate_card
from server.machines.definition import TemplateNode, parse_flow
from server.store.audience import ContactPhones
from server.store.catalog import TemplateRepository
from server.store.database import Database
from server.store.flows import FlowRepository

ASSUMPTION = (
    "one send per template node to every contact counted, outside the customer-service window "
    "(the most it can cost: utility templates are free inside an open window)"
)


class CostServices(Protocol):
    """What a flow's cost estimate reads."""

    @property
    def database(self) -> Database: ...

    @property
    def flows(self) -> FlowRepository: ...

    @property
    def templates(self) -> TemplateRepository: ...


async def flow_cost_estimate(
    services: CostServices, workspace_id: str, flow: dict[str, Any], country: str | None = None
) -> dict[str, Any]:
    """Per template node: its category and price for ``country``, or for the workspace's contacts."""
    card = load_rate_card()
    definition = flow["draft"]
    if flow.get("active_version"):
        version = await services.flows.get_version(flow["_id"], flow["active_version"])
        definition = (version or {}).get("definition") or definition
    if country:
        audience: dict[str | None, int | None] = {country.upper(): None}
    else:
        audience = dict(await ContactPhones(services.database).count_by(workspace_id, country_of))
    nodes: list[dict[str, Any]] = []
    for node in parse_flow(definition).nodes:
        if not isinstance(node, TemplateNode):
            continue
        found = await services.templates.get_by_name(workspace_id, node.template, node.language)
        category = found[0]["category"] if found else None
        lines: list[dict[str, Any]] = []
        for where, contacts in sorted(audience.items(), key=lambda item: str(item[0])):
            market, unit = card.rate(category, where) if category else (None, None)
            total = None if unit is None or contacts is None else round(unit * contacts, 6)
            lines.append(
                {"country": where, "market": market, "contacts": contacts, "unit_price": unit, "total": total}
            )
        known = [line["total"] for line in lines if line["total"] is not None]
        nodes.append(
            {
                "node_id": node.id,
                "template": node.template,
                "language": node.language,
                "category": category,
                "lines": lines,
                "total": round(sum(known), 6) if known and not country else None,
                "complete": all(line["unit_price"] is not None for line in lines),
            }
        )
    totals = [n["total"] for n in nodes if n["total"] is not None]
    return {
        "currency": card.currency,
        "rate_card_valid_from": card.valid_from,
        "assumption": ASSUMPTION,
        "nodes": nodes,
        "total": round(sum(totals), 6) if totals else None,
    }
