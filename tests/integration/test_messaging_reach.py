"""The messaging-limit ledger (``messaging_reach``): who each business portfolio reached, when.

The broadcast runner counts a closed-window recipient just before starting it, and the WhatsApp
channel counts the same person again as the template goes out, seconds later: one process stores
that reach once (issue 19), and again once the earlier time is a minute old.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from server.runtime import Runtime
from server.store.broadcasts import RECENT_REACH
from tests.integration.conftest import WORKSPACE
from tests.support.clock import ShiftedClock

ANA, BEA = "+34600000401", "+34600000402"


async def stored(runtime: Runtime) -> dict[tuple[str | None, str], datetime]:
    found = await runtime.database.collection("messaging_reach").find({"workspace_id": WORKSPACE}).to_list()
    return {(d["portfolio"], d["phone"]): d["at"] for d in found}


async def test_a_reach_stored_moments_ago_is_not_written_again(runtime: Runtime, clock: ShiftedClock) -> None:
    limits = runtime.limits
    counted = clock.now().replace(microsecond=0)  # the store keeps milliseconds
    await limits.record(WORKSPACE, [ANA], counted)  # the runner, before starting Ana
    sent = counted + timedelta(seconds=5)
    await limits.record(WORKSPACE, [ANA, BEA], sent)  # the channel, as the templates go
    assert await stored(runtime) == {(None, ANA): counted, (None, BEA): sent}
    assert await limits.used_since(WORKSPACE, counted - timedelta(hours=24)) == 2

    later = counted + RECENT_REACH + timedelta(seconds=1)
    await limits.record(WORKSPACE, [ANA], later)  # a minute on: the ledger follows again
    await limits.record(WORKSPACE, [ANA], later, portfolio="1234567890")  # another portfolio's own count
    assert await stored(runtime) == {
        (None, ANA): later,
        (None, BEA): sent,
        ("1234567890", ANA): later,
    }
    assert await limits.oldest_since(WORKSPACE, counted) == sent


async def test_a_reach_another_process_stored_is_written_by_this_one_too(
    runtime: Runtime, clock: ShiftedClock
) -> None:
    """Only what this process stored is skipped: its count of the others' writes starts empty."""
    counted = clock.now().replace(microsecond=0)
    await runtime.limits.record(WORKSPACE, [ANA], counted)
    other_process = type(runtime.limits)(runtime.database)
    sent = counted + timedelta(seconds=2)
    await other_process.record(WORKSPACE, [ANA], sent)
    assert await stored(runtime) == {(None, ANA): sent}
