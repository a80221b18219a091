"""The benchmarks in ``--quick`` mode, so their code does not rot: it must run and print the table.
No timing is asserted (the verdicts need the full sizes; ``./scripts/bench``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROWS = ["P1", "P2", "P3", "P4", "P5", "P6"]


@pytest.mark.e2e
@pytest.mark.timeout(300)  # ~60 s on an idle 2-core machine; more when it is shared
def test_quick_benchmarks_print_the_table() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KONVO_")}
    done = subprocess.run(
        [sys.executable, "-m", "scripts.benchmarks", "--quick", *ROWS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    header = next((i for i, line in enumerate(lines) if line.startswith("#  | what")), None)
    assert header is not None, done.stdout[-3000:]
    keys = [line.split("|")[0].strip() for line in lines[header + 2 : header + 2 + len(ROWS)]]
    assert keys == ROWS, done.stdout[-3000:]
