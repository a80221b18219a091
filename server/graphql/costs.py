"""GraphQL shapes of cost estimates (``Flow.costEstimate``; broadcasts reuse them)."""

from __future__ import annotations

from typing import Any

import strawberry


@strawberry.type
class CostLine:
    country: str | None
    market: str | None
    contacts: int | None
    unit_price: float | None = strawberry.field(description="null when the country is not on the rate card")
    total: float | None


@strawberry.type
class TemplateNodeCost:
    node_id: str
    template: str
    language: str
    category: str | None
    lines: list[CostLine]
    total: float | None
    complete: bool = strawberry.field(description="false when some country has no rate on the card")


@strawberry.type
class CostEstimate:
    currency: str
    rate_card_valid_from: str
    assumption: str
    nodes: list[TemplateNodeCost]
    total: float | None

    @classmethod
    def of(cls, data: dict[str, Any]) -> CostEstimate:
        return cls(
            currency=data["currency"],
            rate_card_valid_from=data["rate_card_valid_from"],
            assumption=data["assumption"],
            total=data["total"],
            nodes=[
                TemplateNodeCost(
                    node_id=n["node_id"],
                    template=n["template"],
                    language=n["language"],
                    category=n["category"],
                    total=n["total"],
                    complete=n["complete"],
                    lines=[CostLine(**line) for line in n["lines"]],
                )
                for n in data["nodes"]
            ],
        )
