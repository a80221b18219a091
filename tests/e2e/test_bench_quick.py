"""The benchmarks in ``--quick`` mode, so their code does not rot: they must run and print their
tables (issue 8's rows, and issue 19's cost per event). No timing is asserted (the verdicts need
the full sizes; ``./scripts/bench``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROWS = ["P1", "P2", "P3", "P4", "P5", "P6"]
COST_ROWS = ["P1", "P2", "P2 bare", "P3", "P4", "P4 80%"]
COSTS_HEADER = "#  | events"


def _run(args: list[str], timeout: float) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KONVO_")}
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def _keys(lines: list[str], header: str, count: int) -> list[str]:
    """The first column of the ``count`` rows under the table whose header line starts with ``header``."""
    at = next(
        (i for i, line in enumerate(lines) if line.replace(" ", "").startswith(header.replace(" ", ""))), None
    )
    assert at is not None, "\n".join(lines[-40:])
    return [line.split("|")[0].strip() for line in lines[at + 2 : at + 2 + count]]


def _cost_cells(lines: list[str], key: str) -> list[str]:
    row = next(line for line in lines if line.split("|")[0].strip() == key)
    return [cell.strip() for cell in row.split("|")]


# Each row starts its own store, Redis and server (a fresh store creates every index): about two
# minutes a row on a shared machine. The default suite runs P1, whose cost row the assertions
# read; `./scripts/test --full` runs every row.
SUITES = [
    pytest.param(["P1"], ["P1"], id="P1"),
    pytest.param(ROWS, COST_ROWS, id="all-rows", marks=pytest.mark.full),
]


@pytest.mark.e2e
@pytest.mark.timeout(900)
@pytest.mark.parametrize(("rows", "cost_rows"), SUITES)
def test_quick_benchmarks_print_the_table_and_the_cost_per_event(
    rows: list[str], cost_rows: list[str]
) -> None:
    stdout = _run([sys.executable, "-m", "scripts.benchmarks", "--quick", *rows], timeout=880)
    lines = stdout.splitlines()
    assert _keys(lines, "#  | what", len(rows)) == rows, stdout[-3000:]
    costs_at = next(i for i, line in enumerate(lines) if line.startswith("Cost per event"))
    cost_lines = lines[costs_at:]
    assert _keys(cost_lines, COSTS_HEADER, len(cost_rows)) == cost_rows, stdout[-3000:]
    p1 = _cost_cells(cost_lines, "P1")
    # server, store and Redis CPU, load generator and fake, store work: all measured for P1
    assert all(cell != "-" for cell in p1[2:10]), p1
    assert "(<= 1)" in p1[2] and "(<= 2)" in p1[3], p1
    assert float(p1[8]) > 0 and float(p1[9]) > 0, p1  # documents written, store commands per webhook
    assert p1[-1] == "-", p1  # no verdict in quick mode


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_quick_broadcast_prints_its_cost_per_message() -> None:
    stdout = _run([sys.executable, "scripts/benchmarks/broadcast.py", "--quick"], timeout=300)
    lines = stdout.splitlines()
    costs_at = next(i for i, line in enumerate(lines) if line.startswith("Cost per event"))
    cells = _cost_cells(lines[costs_at:], "broadcast")
    assert cells[1] == "100 messages", cells
    assert "(<= 0.7)" in cells[2] and "(<= 1.5)" in cells[3], cells
    assert cells[6] != "-", cells  # the Graph API fake's own CPU
    assert "every recipient exactly once: yes" in stdout, stdout[-3000:]
