"""The benchmark's measuring parts on their own: CPU read from /proc charges a process for what it
used, the load generator reads both kinds of HTTP/1.1 bodies, and the cost table's verdicts."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter

import pytest

from scripts.benchmarks.costs import EventCosts, StoreWork
from scripts.benchmarks.loadgen import read_response
from scripts.benchmarks.proc_cpu import CpuUsage, CpuWindow

# Burns 0.3 s of its own CPU (not wall time: the machine may be busy) once told to.
BURNER = """
import sys, time
sys.stdin.readline()
while time.process_time() < 0.3:
    pass
print("done", flush=True)
sys.stdin.readline()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_cpu_window_charges_each_process_for_what_it_used_in_the_window() -> None:
    burner = subprocess.Popen(
        [sys.executable, "-c", BURNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert burner.stdin is not None and burner.stdout is not None
    try:
        window = CpuWindow({"burner": burner.pid, "absent": None})
        window.open()  # the interpreter's start-up is before the window: not counted
        burner.stdin.write("go\n")
        burner.stdin.flush()
        assert burner.stdout.readline().strip() == "done"
        usage = window.close()
    finally:
        burner.communicate("\n", timeout=30)
    burned = usage.seconds["burner"]
    assert burned is not None and 0.25 <= burned <= 0.6, usage
    assert usage.seconds["absent"] is None


async def _response(raw: bytes) -> tuple[int, bytes, bool]:
    reader = asyncio.StreamReader()
    reader.feed_data(raw)
    reader.feed_eof()
    return await read_response(reader)


async def test_the_load_generator_reads_sized_and_chunked_responses() -> None:
    sized = b'HTTP/1.1 200 OK\r\ncontent-length: 11\r\ncontent-type: application/json\r\n\r\n{"ok":true}'
    assert await _response(sized) == (200, b'{"ok":true}', True)
    chunked = (
        b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"4\r\nbusy\r\n6;ext=1\r\n, try \r\n5\r\nlater\r\n0\r\n\r\n"
    )
    assert await _response(chunked) == (503, b"busy, try later", False)
    with pytest.raises(ValueError, match="neither Content-Length nor chunked"):
        await _response(b"HTTP/1.1 200 OK\r\n\r\n")


def _costs(targets: dict[str, float], quick: bool = False, **checks: bool) -> EventCosts:
    usage = CpuUsage({"server": 0.8, "store": 1.5, "redis": 0.1, "loadgen": None}, wall_seconds=2.0)
    work = StoreWork(Counter({"insert": 2000, "find": 500}), 6000)
    return EventCosts("P1", 1000, "webhook", usage, work, targets, dict(checks), quick=quick)


def test_the_cost_row_is_per_event_and_judged_against_its_targets() -> None:
    row = _costs({"server": 1.0, "store": 2.0})
    assert row.ms("server") == pytest.approx(0.8) and row.ms("store") == pytest.approx(1.5)
    assert row.ms("loadgen") is None and row.ms("fake") is None
    cells = row.cells()
    assert cells[:4] == ["P1", "1,000 webhooks", "0.80 (<= 1)", "1.50 (<= 2)"]
    assert cells[-3:] == ["6.00", "2.50", "PASS"]  # documents written, commands, per webhook
    assert _costs({"server": 0.7}).passed is False
    assert _costs({"server": 1.0}, applied=False).passed is False  # a failed check fails the row
    assert _costs({"server": 1.0}, quick=True).passed is None
    assert _costs({}, applied=True).passed is None  # nothing to judge the CPU against
    assert "commands per webhook: insert 2.00, find 0.50" in row.notes()
