"""The Mongo filter and the in-memory evaluator select the same contacts, on the real store.

Hypothesis draws contacts with awkward values (missing, null, mixed types, lists, bools that
are not numbers, dates at sub-millisecond precision) and nested segments over the same small
vocabulary, so that leaves actually hit; every example is checked against a real collection.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from pymongo import MongoClient

from server.config import Settings
from server.segments import matches, to_mongo_filter

NOW = datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
VAR_NAMES = ["city", "orders", "vip", "birthday", "items", "note"]
TAGS = ["vip", "VIP", "cart-cold", "b2b"]
AGENTS = ["ana@shop.example", "bo@shop.example", ""]
WORDS = ["Madrid", "madrid", "MAD", "Ärger", "ärg", "a.b", "a+b", "x\ny", "", "ß", "10", "Z"]

dates = st.datetimes(
    min_value=datetime(1950, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
) | st.datetimes(min_value=datetime(1950, 1, 1), max_value=datetime(2100, 1, 1))
near_now = st.integers(min_value=-40 * 24 * 3600 * 1000, max_value=3600 * 1000).map(
    lambda ms: NOW + timedelta(milliseconds=ms, microseconds=789)
)
numbers = (
    st.sampled_from([0, 1, 2, 3, -1, 3.0, 2.5, -0.0, 10**12])
    | st.integers(-5, 5)
    | st.floats(-10, 10, allow_nan=False)
)
texts = st.sampled_from(WORDS) | st.text(alphabet="aAbB.+ ä", max_size=4)
scalars = numbers | texts | st.booleans() | dates | st.sampled_from([datetime(2000, 1, 1, tzinfo=UTC)])
values = (
    scalars
    | st.none()
    | st.lists(scalars | st.none(), max_size=3)
    | st.lists(st.lists(scalars, max_size=2), max_size=2)
    | st.just({"a": 1})
)


@st.composite
def contacts(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A handful of contacts with distinct ids; any field may be missing."""
    count = draw(st.integers(min_value=1, max_value=8))
    out = []
    for i in range(count):
        doc: dict[str, Any] = {"_id": f"ws:{i}", "workspace_id": "ws"}
        if draw(st.booleans()):
            # None: a customer who shares no phone number (known by BSUID only)
            doc["phone"] = draw(
                st.sampled_from(["+34600111222", "+3460", "+44700", "+1555", "34600", None, ""])
            )
        if draw(st.integers(0, 4)):
            doc["tags"] = draw(st.lists(st.sampled_from(TAGS), max_size=3, unique=True))
        if draw(st.integers(0, 5)):
            doc["variables"] = draw(st.dictionaries(st.sampled_from(VAR_NAMES), values, max_size=5))
        if draw(st.integers(0, 4)):
            doc["opted_in"] = draw(st.booleans() | st.none())
        if draw(st.integers(0, 4)):
            doc["assigned_agent"] = draw(st.sampled_from([*AGENTS, None]))
        if draw(st.integers(0, 4)):
            doc["last_inbound_at"] = draw(near_now | st.none())
        out.append(doc)
    return out


query_scalars = (
    numbers
    | texts.filter(bool)
    | st.booleans()
    | dates
    | near_now
    | st.just({"$date": "2000-01-01T00:00:00Z"})
)


@st.composite
def var_leaf(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(st.sampled_from(VAR_NAMES))
    op = draw(st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte", "in", "contains", "exists"]))
    if op == "exists":
        return {"var": name, "op": op, "value": draw(st.booleans())}
    if op == "in":
        return {"var": name, "op": op, "value": draw(st.lists(query_scalars, max_size=3))}
    if op in ("gt", "gte", "lt", "lte"):
        return {"var": name, "op": op, "value": draw(numbers | texts | dates | near_now)}
    return {"var": name, "op": op, "value": draw(query_scalars)}


durations = st.sampled_from(["30m", "2h", "24h", "3d", "7d", "45s", "PT2H", "0s"])
leaves = st.one_of(
    st.builds(lambda t: {"tag": t}, st.sampled_from(TAGS)),
    st.builds(lambda b: {"opted_in": b}, st.booleans()),
    st.builds(lambda b: {"assigned": b}, st.booleans()),
    st.builds(lambda a: {"assigned_to": a}, st.sampled_from(AGENTS[:2])),
    st.builds(lambda k, d: {"last_inbound": {k: d}}, st.sampled_from(["within", "before"]), durations),
    st.builds(lambda p: {"phone_prefix": p}, st.sampled_from(["+34", "+346", "+4", "+1555"])),
    st.builds(lambda b: {"has_phone": b}, st.booleans()),
    var_leaf(),
)
segments = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.builds(lambda xs: {"all": xs}, st.lists(inner, max_size=3)),
        st.builds(lambda xs: {"any": xs}, st.lists(inner, max_size=3)),
        st.builds(lambda x: {"not": x}, inner),
    ),
    max_leaves=8,
)


@pytest.fixture
def collection(settings: Settings) -> Any:
    """A real collection in this test's own database (sync driver: hypothesis runs sync)."""
    client: MongoClient[dict[str, Any]] = MongoClient(settings.mongodb_uri, serverSelectionTimeoutMS=5000)
    try:
        yield client[settings.mongodb_db]["contacts"]
    finally:
        client.close()


@hyp_settings(max_examples=150)  # the rest from the profile (tests/hypothesis_profiles.py)
@given(docs=contacts(), segment_list=st.lists(segments, min_size=1, max_size=5))
def test_filter_and_evaluator_select_the_same_contacts(
    collection: Any, docs: list[dict[str, Any]], segment_list: list[dict[str, Any]]
) -> None:
    collection.delete_many({})
    collection.insert_many([dict(d) for d in docs])
    stored = {d["_id"]: d for d in collection.find({})}
    for segment in segment_list:
        found = {d["_id"] for d in collection.find(to_mongo_filter(segment, NOW))}
        expected = {d["_id"] for d in docs if matches(segment, d, NOW)}
        assert found == expected, (segment, to_mongo_filter(segment, NOW))
        # The evaluator also agrees on what the store hands back (naive UTC, millisecond dates).
        assert {i for i, d in stored.items() if matches(segment, d, NOW)} == expected


# Fixed cases for the operators whose every translation must hold on the store, whatever the
# random search happens to draw: presence, "not equal" (which takes missing values), "in", and
# "contains" with a number (list membership: a random draw rarely puts that number in a list).
FIXED_DOCS = [
    {"_id": "set", "variables": {"city": "Madrid", "items": [1, 3]}},
    {"_id": "other", "variables": {"city": "Lyon", "items": 3}},  # a scalar is not a list
    {"_id": "null", "variables": {"city": None}},
    {"_id": "missing", "variables": {}},
    {"_id": "list", "variables": {"city": ["Lyon", "Madrid"], "items": ["3", 4]}},
]


@pytest.mark.parametrize(
    ("segment", "selected"),
    [
        ({"var": "city", "op": "exists", "value": True}, {"set", "other", "list"}),
        ({"var": "city", "op": "exists", "value": False}, {"null", "missing"}),
        ({"var": "city", "op": "ne", "value": "Madrid"}, {"other", "null", "missing"}),
        ({"var": "city", "op": "in", "value": ["Madrid", "Bilbao"]}, {"set", "list"}),
        ({"not": {"var": "city", "op": "in", "value": ["Madrid"]}}, {"other", "null", "missing"}),
        ({"var": "items", "op": "contains", "value": 3}, {"set"}),
        ({"not": {"var": "items", "op": "contains", "value": 3}}, {"other", "null", "missing", "list"}),
    ],
)
def test_presence_not_equal_in_and_contains_select_the_same_contacts(
    collection: Any, segment: dict[str, Any], selected: set[str]
) -> None:
    collection.delete_many({})
    collection.insert_many([dict(d) for d in FIXED_DOCS])
    found = {d["_id"] for d in collection.find(to_mongo_filter(segment, NOW))}
    assert found == selected, to_mongo_filter(segment, NOW)
    assert {d["_id"] for d in FIXED_DOCS if matches(segment, d, NOW)} == selected
