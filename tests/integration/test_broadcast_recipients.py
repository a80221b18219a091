"""A broadcast recipient is written once, with what became of it; reads answer as before.

Issue 19: a recipient was inserted queued at the freeze and updated when it started (0.86-0.92
store CPU-ms per message on the embedded store: the update rewrote it and its state index). The
freeze now writes the audience (``broadcast_audience``) and the outcome is inserted once into
``broadcast_recipients``; a queued recipient is a member without an outcome. Broadcasts frozen by
an older version (queued documents in ``broadcast_recipients``) keep working.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from server.store.broadcasts import RecipientRepository
from server.store.database import Database
from tests.integration.conftest import WORKSPACE
from tests.integration.test_read_model_writes import statements

BROADCAST = "bc_once"
PHONES = [f"+3460070{i:04d}" for i in range(5)]


def frozen(broadcast_id: str, phone: str) -> dict[str, Any]:
    """A recipient as the runner's freeze builds it."""
    return {
        "_id": f"{broadcast_id}:{phone}",
        "broadcast_id": broadcast_id,
        "workspace_id": WORKSPACE,
        "contact_id": f"{WORKSPACE}:{phone}",
        "phone": phone,
        "state": "queued",
        "reason": None,
        "run_id": None,
        "at": None,
    }


def counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in rows:
        out[row["_id"]["state"]] = out.get(row["_id"]["state"], 0) + row["n"]
    return out


def states(page: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(d["phone"], d["state"]) for d in page]


async def test_a_recipient_is_written_once_with_its_outcome_and_listed_as_before(counted: Database) -> None:
    recipients = RecipientRepository(counted)
    await recipients.add_many([frozen(BROADCAST, p) for p in PHONES])
    await recipients.add_many([frozen(BROADCAST, p) for p in PHONES[:2]])  # a freeze redone: kept
    assert await recipients.count(BROADCAST) == 5
    assert statements(counted, "broadcast_recipients") == {}
    first = await recipients.queued(BROADCAST, "", 3)
    assert [r["phone"] for r in first] == PHONES[:3]
    assert [r["phone"] for r in await recipients.queued(BROADCAST, first[-1]["_id"], 3)] == PHONES[3:]

    now = datetime.now(UTC)
    started = {"state": "started", "run_id": "run_1", "at": now}
    await recipients.set_states(
        [(first[1], {"state": "skipped", "reason": "NO_OPT_IN", "at": now})], ["queued"]
    )
    await recipients.set_states([(first[0], started)], ["queued", "cancelled"])
    assert statements(counted, "broadcast_recipients") == {"insert": 2}  # one write per recipient
    assert counts(await recipients.state_counts(BROADCAST)) == {"started": 1, "skipped": 1, "queued": 3}
    assert [r["phone"] for r in await recipients.queued(BROADCAST, "", 10)] == PHONES[2:]

    listed = await recipients.page(BROADCAST, None, None, "", 3)
    assert states(listed) == [(PHONES[0], "started"), (PHONES[1], "skipped"), (PHONES[2], "queued")]
    assert listed[0]["run_id"] == "run_1"
    rest = await recipients.page(BROADCAST, None, None, listed[-1]["_id"], 3)
    assert states(rest) == [(PHONES[3], "queued"), (PHONES[4], "queued")]
    assert states(await recipients.page(BROADCAST, ["queued"], None, "", 10)) == [
        (p, "queued") for p in PHONES[2:]
    ]
    assert states(await recipients.page(BROADCAST, ["started"], None, "", 10)) == [(PHONES[0], "started")]

    # A delivery note that comes before the start is written: stored queued, the start then updates it.
    contact = {"workspace_id": WORKSPACE, "phone": PHONES[2]}
    await recipients.note(contact, {"broadcast_id": BROADCAST}, "HELD", {"reason": "QUIET_HOURS"})
    assert counts(await recipients.state_counts(BROADCAST))["queued"] == 3
    await recipients.set_states([(first[2], {**started, "run_id": "run_3"})], ["queued", "cancelled"])
    [held] = await recipients.page(BROADCAST, None, ["HELD"], "", 10)
    assert (held["phone"], held["state"], held["run_id"]) == (PHONES[2], "started", "run_3")
    stranger = {"workspace_id": WORKSPACE, "phone": "+34600999999"}  # not a recipient: nothing stored
    await recipients.note(stranger, {"broadcast_id": BROADCAST}, "HELD", {"reason": "QUIET_HOURS"})
    assert await recipients.count(BROADCAST) == 5

    assert await recipients.any_queued(BROADCAST)
    assert await recipients.cancel_queued(BROADCAST, now) == 2
    assert not await recipients.any_queued(BROADCAST)
    assert counts(await recipients.state_counts(BROADCAST)) == {"started": 2, "skipped": 1, "cancelled": 2}
    assert await recipients.queued(BROADCAST, "", 10) == []
    # a start that raced the cancel wins, as before
    await recipients.set_states([(frozen(BROADCAST, PHONES[3]), started)], ["queued", "cancelled"])
    assert counts(await recipients.state_counts(BROADCAST)) == {"started": 3, "skipped": 1, "cancelled": 1}


async def test_a_broadcast_frozen_by_an_older_version_runs_on(counted: Database) -> None:
    recipients = RecipientRepository(counted)
    older = "bc_older"
    await counted.collection("broadcast_recipients").insert_many([frozen(older, p) for p in PHONES[:3]])
    assert await recipients.count(older) == 3
    queued = await recipients.queued(older, "", 10)
    assert [r["phone"] for r in queued] == PHONES[:3]
    now = datetime.now(UTC)
    await recipients.set_states([(queued[0], {"state": "started", "run_id": "run_o", "at": now})], ["queued"])
    assert counts(await recipients.state_counts(older)) == {"started": 1, "queued": 2}
    listed = await recipients.page(older, None, None, "", 10)
    assert states(listed) == [(PHONES[0], "started"), (PHONES[1], "queued"), (PHONES[2], "queued")]
    assert await recipients.any_queued(older)
    assert await recipients.cancel_queued(older, now) == 2
    assert not await recipients.any_queued(older)
    assert counts(await recipients.state_counts(older)) == {"started": 1, "cancelled": 2}


async def test_an_older_replica_freezing_a_broadcast_again_lists_nobody_twice(counted: Database) -> None:
    """A rolling deploy: an older replica takes the broadcast over and freezes it its own way
    (queued documents, kept where an outcome is stored); every recipient is still listed once."""
    recipients = RecipientRepository(counted)
    both = "bc_both"
    await recipients.add_many([frozen(both, p) for p in PHONES])
    queued = await recipients.queued(both, "", 2)
    now = datetime.now(UTC)
    await recipients.set_states(
        [(r, {"state": "started", "run_id": "run_b", "at": now}) for r in queued], ["queued"]
    )
    older_freeze = counted.collection("broadcast_recipients")
    for phone in PHONES:  # what the older version's add_many did: insert, duplicates kept as they are
        if await older_freeze.find_one({"_id": f"{both}:{phone}"}) is None:
            await older_freeze.insert_one(frozen(both, phone))
    assert [r["phone"] for r in await recipients.queued(both, "", 10)] == PHONES[2:]
    assert counts(await recipients.state_counts(both)) == {"started": 2, "queued": 3}
    assert [d["phone"] for d in await recipients.page(both, None, None, "", 10)] == PHONES
