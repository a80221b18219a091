"""``copy_document``: an independent copy of a stored document, whatever it nests."""

from __future__ import annotations

import datetime as dt

from bson import ObjectId

from server.document_copy import copy_document


def test_the_copy_is_equal_and_shares_nothing_mutable() -> None:
    now = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    original = {
        "_id": "ws:+34600000001",
        "version": 3,
        "runs": [{"id": "r1", "vars": {"n": 1}, "steps": [{"at": now}]}],
        "tags": ["a"],
        "seen": {1, 2},
        "pair": (1, [2]),
        "oid": ObjectId(),
        "raw": b"x",
        "ok": True,
        "none": None,
        "score": 1.5,
    }
    copied = copy_document(original)
    assert copied == original
    copied["runs"][0]["vars"]["n"] = 2
    copied["runs"][0]["steps"].append({"at": now})
    copied["tags"].append("b")
    copied["seen"].add(3)
    copied["pair"][1].append(3)
    assert original["runs"] == [{"id": "r1", "vars": {"n": 1}, "steps": [{"at": now}]}]
    assert original["tags"] == ["a"] and original["seen"] == {1, 2} and original["pair"] == (1, [2])
