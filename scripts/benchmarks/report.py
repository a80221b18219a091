"""One row of the benchmark table and how the table is printed."""

from __future__ import annotations

from dataclasses import dataclass, field

from scripts.benchmarks.costs import EventCosts


@dataclass
class Row:
    key: str
    what: str
    measured: str
    reference: str
    target: str
    passed: bool | None  # None: measured, but no verdict (quick mode or missing reference)
    notes: str = ""
    costs: list[EventCosts] = field(default_factory=list)  # per-event costs (issue 19), where measured

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: "-"}[self.passed]


def print_table(rows: list[Row]) -> None:
    headers = ("#", "what", "measured", "reference", "target", "result")
    cells = [(r.key, r.what, r.measured, r.reference, r.target, r.verdict) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line)
    print("-+-".join("-" * w for w in widths))
    for cell in cells:
        print(" | ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)))
    for row in rows:
        if row.notes:
            print(f"  {row.key}: {row.notes}")
