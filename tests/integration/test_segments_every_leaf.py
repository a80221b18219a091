"""Every kind of segment leaf and connective, on fixed contacts: the store filter and the evaluator
select exactly the contacts named here.

The property test (``test_segments_property.py``) searches at random and is slow; this table is
the cheap, certain floor under it: each leaf on a field that is set, set to another value, null,
and missing; ``all``/``any`` with none, one and two parts; a ``last_inbound`` leaf nested under
each connective (the moment is passed down). A broken translation of any single leaf, or a
connective that keeps only its first part, changes at least one row.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import MongoClient

from server.config import Settings
from server.segments import matches, to_mongo_filter

NOW = datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)

CONTACTS: list[dict[str, Any]] = [
    {
        "_id": "full",
        "phone": "+34600111222",
        "tags": ["vip", "b2b"],
        "opted_in": True,
        "assigned_agent": "ana@shop.example",
        "last_inbound_at": NOW - timedelta(hours=1),
        "variables": {"city": "Madrid", "orders": 3},
    },
    {
        "_id": "other",
        "phone": "+44700900100",
        "tags": ["cold"],
        "opted_in": False,
        "assigned_agent": "bo@shop.example",
        "last_inbound_at": NOW - timedelta(days=8),
        "variables": {"city": "Lyon", "orders": 0},
    },
    {  # every field present and null
        "_id": "nulls",
        "phone": None,
        "tags": None,
        "opted_in": None,
        "assigned_agent": None,
        "last_inbound_at": None,
        "variables": None,
    },
    {"_id": "bare"},  # every field missing
]
EVERYONE = {"full", "other", "nulls", "bare"}
WITHIN_2H = {"last_inbound": {"within": "2h"}}

CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({"tag": "vip"}, {"full"}),
    ({"opted_in": True}, {"full"}),
    ({"opted_in": False}, {"other", "nulls", "bare"}),
    ({"assigned": True}, {"full", "other"}),
    ({"assigned": False}, {"nulls", "bare"}),
    ({"assigned_to": "bo@shop.example"}, {"other"}),
    ({"phone_prefix": "+34"}, {"full"}),
    ({"has_phone": True}, {"full", "other"}),
    ({"has_phone": False}, {"nulls", "bare"}),
    (WITHIN_2H, {"full"}),
    ({"last_inbound": {"before": "7d"}}, {"other", "nulls", "bare"}),
    ({"var": "city", "op": "exists", "value": True}, {"full", "other"}),
    ({"var": "city", "op": "exists", "value": False}, {"nulls", "bare"}),  # no variables at all
    ({"var": "orders", "op": "lt", "value": 1}, {"other"}),
    ({"all": []}, EVERYONE),
    ({"all": [{"has_phone": True}]}, {"full", "other"}),
    ({"all": [{"has_phone": True}, {"tag": "vip"}]}, {"full"}),
    ({"all": [{"has_phone": True}, WITHIN_2H]}, {"full"}),
    ({"any": []}, set()),
    ({"any": [{"tag": "cold"}]}, {"other"}),
    ({"any": [{"tag": "vip"}, {"tag": "cold"}]}, {"full", "other"}),
    ({"any": [{"tag": "cold"}, WITHIN_2H]}, {"full", "other"}),
    ({"not": WITHIN_2H}, {"other", "nulls", "bare"}),
    ({"not": {"has_phone": True}}, {"nulls", "bare"}),
]


@pytest.fixture
def collection(settings: Settings) -> Any:
    """A real collection in this test's own database, holding ``CONTACTS``."""
    client: MongoClient[dict[str, Any]] = MongoClient(settings.mongodb_uri, serverSelectionTimeoutMS=5000)
    try:
        contacts = client[settings.mongodb_db]["contacts"]
        contacts.insert_many([dict(c) for c in CONTACTS])
        yield contacts
    finally:
        client.close()


def test_every_leaf_and_connective_selects_the_named_contacts_in_the_store_and_in_memory(
    collection: Any,
) -> None:
    wrong = []
    for segment, selected in CASES:
        found = {d["_id"] for d in collection.find(to_mongo_filter(segment, NOW))}
        evaluated = {c["_id"] for c in CONTACTS if matches(segment, c, NOW)}
        if found != selected or evaluated != selected:
            wrong.append(
                f"{segment}: store {sorted(found)}, memory {sorted(evaluated)}, not {sorted(selected)}"
            )
    assert not wrong, "\n".join(wrong)
