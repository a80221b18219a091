"""``./scripts/bench [--quick] [--size N] [P4 P5 ...]``: run the benchmarks and print one table."""

from __future__ import annotations

import argparse
import asyncio
import logging

from scripts.benchmarks import endpoint, harness, inbound, latency, memory, recovery, timers
from scripts.benchmarks.costs import print_costs
from scripts.benchmarks.report import Row, print_table

# row -> (module, full size, quick size)
ROWS = {
    "P1": (inbound, 10_000, 50),
    "P2": (endpoint, 5_000, 1_000),
    "P3": (latency, 2_000, 30),
    "P4": (timers, 10_000, 300),
    "P5": (memory, 200_000, 1_000),
    "P6": (recovery, 100_000, 1_000),
}


async def run(keys: list[str], quick: bool, size: int | None = None) -> list[Row]:
    rows = []
    for key in keys:
        module, full, small = ROWS[key]
        with harness.services() as services:
            rows.append(await module.measure(services, size or (small if quick else full), quick))
        row = rows[-1]
        print(f"... {row.key}: {row.measured} (reference {row.reference}; target {row.target})", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, no verdicts")
    parser.add_argument(
        "--size", type=int, help="events per row instead of its full (or quick) size, e.g. to compare changes"
    )
    parser.add_argument("rows", nargs="*", metavar="ROW", help="rows to run (default: all)")
    args = parser.parse_args()
    unknown = [row for row in args.rows if row not in ROWS]
    if unknown:
        parser.error(f"unknown row(s) {', '.join(unknown)}; choose from {', '.join(ROWS)}")
    logging.basicConfig(level=logging.WARNING)
    rows = asyncio.run(run(args.rows or list(ROWS), args.quick, args.size))
    print()
    print_table(rows)
    print_costs([costs for row in rows for costs in row.costs])


if __name__ == "__main__":
    main()
