"""Segment language: validation messages, in-memory semantics and the filters they compile to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from server.errors import InvalidInput
from server.segments import matches, to_mongo_filter, validate_segment
from server.segments.mongo import MATCH_NONE

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def contact(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "_id": "ws:+34600111222",
        "workspace_id": "ws",
        "phone": "+34600111222",
        "name": None,
        "tags": [],
        "variables": {},
        "opted_in": False,
        "assigned_agent": None,
        "last_inbound_at": None,
    }
    return base | fields


def var(name: str, op: str, value: Any = None, **vars_: Any) -> bool:
    segment = {"var": name, "op": op} if value is None else {"var": name, "op": op, "value": value}
    return matches(segment, contact(variables=vars_), NOW)


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("segment", "path", "fragment"),
    [
        (
            {"all": [{"tag": "a"}, {"tag": "b"}, {"var": "x", "op": "between", "value": 1}]},
            "segment.all[2].op",
            "'between' is not an operator; use one of eq, ne, gt",
        ),
        ({"var": "x", "value": 1}, "segment.op", "missing operator"),
        ("vip", "segment", "not text 'vip'"),
        ({}, "segment", "empty segment"),
        ({"tags": "vip"}, "segment", "'tags' is not a segment; use one of all, any"),
        ({"tag": "vip", "opted_in": True}, "segment", "exactly one of 'tag', 'opted_in'"),
        ({"tag": "vip", "extra": 1}, "segment.extra", "unexpected key in a 'tag' segment"),
        ({"any": {"tag": "vip"}}, "segment.any", "takes a list of segments"),
        ({"not": [{"tag": "a"}]}, "segment.not", "'not' takes one segment"),
        ({"any": [{"not": {"tag": ""}}]}, "segment.any[0].not.tag", "expected a tag name, not empty text"),
        ({"opted_in": "yes"}, "segment.opted_in", "takes true or false, not text 'yes'"),
        ({"assigned": 1}, "segment.assigned", "takes true or false, not the number 1"),
        ({"assigned_to": None}, "segment.assigned_to", "expected an agent id, not null"),
        ({"phone_prefix": "34"}, "segment.phone_prefix", "'34' is not a phone prefix"),
        ({"phone_prefix": "+3a"}, "segment.phone_prefix", "use '+' and digits"),
        ({"last_inbound": {"within": "soon"}}, "segment.last_inbound.within", "'soon' is not a duration"),
        ({"last_inbound": {"after": "2h"}}, "segment.last_inbound", '{"within": "24h"}'),
        ({"last_inbound": {"before": 7}}, "segment.last_inbound.before", "not the number 7"),
        ({"last_inbound": {"within": "99999d"}}, "segment.last_inbound.within", "longer than 36500 days"),
        ({"var": "a.b", "op": "eq", "value": 1}, "segment.var", "'a.b' is not a variable name"),
        ({"var": "$x", "op": "eq", "value": 1}, "segment.var", "no leading '$'"),
        ({"var": 3, "op": "eq", "value": 1}, "segment.var", "takes a variable name"),
        ({"var": "x", "op": "eq"}, "segment.value", "'eq' needs a value"),
        ({"var": "x", "op": "eq", "value": None}, "segment.value", "use op 'exists' with false"),
        ({"var": "x", "op": "eq", "value": [1]}, "segment.value", "use 'in' for several"),
        ({"var": "x", "op": "eq", "value": {"a": 1}}, "segment.value", "an object is not a value"),
        ({"var": "x", "op": "in", "value": "a"}, "segment.value", "'in' takes a list"),
        ({"var": "x", "op": "in", "value": [1, None]}, "segment.value[1]", "null is not a value"),
        ({"var": "x", "op": "gt", "value": True}, "segment.value", "not true/false; use 'eq'"),
        ({"var": "x", "op": "contains", "value": ""}, "segment.value", "non-empty text"),
        ({"var": "x", "op": "exists", "value": "yes"}, "segment.value", "'exists' takes true or false"),
        ({"var": "x", "op": "eq", "value": 2**64}, "segment.value", "does not fit a 64-bit integer"),
        ({"var": "x", "op": "eq", "value": float("nan")}, "segment.value", "not a finite number"),
        ({"var": "x", "op": "lt", "value": {"$date": "yesterday"}}, "segment.value", "not an ISO-8601 date"),
    ],
)
def test_invalid_segments_say_what_and_where(segment: Any, path: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_segment(segment)
    assert caught.value.message.startswith(f"{path}: ")
    assert fragment in caught.value.message
    assert caught.value.details["path"] == path
    assert caught.value.code == "INVALID_INPUT"


def test_the_path_root_can_be_named_by_the_caller() -> None:
    with pytest.raises(InvalidInput, match=r"^nodes\[3\]\.branches\[0\]\.segment\.tag: "):
        validate_segment({"tag": 1}, path="nodes[3].branches[0].segment")


def test_deep_nesting_is_refused() -> None:
    segment: dict[str, Any] = {"tag": "vip"}
    for _ in range(40):
        segment = {"not": segment}
    with pytest.raises(InvalidInput, match="nest more than 32 levels"):
        validate_segment(segment)


@pytest.mark.parametrize(
    "segment",
    [
        {"all": []},
        {"any": []},
        {"not": {"tag": "vip"}},
        {"opted_in": False},
        {"assigned": True},
        {"assigned_to": "ana@shop.example"},
        {"phone_prefix": "+34"},
        {"last_inbound": {"within": "PT2H"}},
        {"last_inbound": {"before": "7d"}},
        {"var": "city", "op": "exists"},
        {"var": "birthday", "op": "lt", "value": {"$date": "2000-01-01"}},
        {"var": "city", "op": "in", "value": ["Madrid", 3, True]},
    ],
)
def test_valid_segments_pass(segment: Any) -> None:
    validate_segment(segment)


# --- semantics --------------------------------------------------------------------------------


def test_tags_opt_in_and_assignment() -> None:
    vip = contact(tags=["vip", "b2b"], opted_in=True, assigned_agent="ana")
    assert matches({"tag": "vip"}, vip, NOW)
    assert not matches({"tag": "VIP"}, vip, NOW)  # tag names are case-sensitive
    assert matches({"opted_in": True}, vip, NOW)
    assert matches({"opted_in": False}, contact(opted_in=None), NOW)
    assert matches({"opted_in": False}, {"_id": "x"}, NOW)  # missing counts as not opted in
    assert matches({"assigned": True}, vip, NOW)
    assert matches({"assigned": False}, contact(), NOW)
    assert matches({"assigned_to": "ana"}, vip, NOW)
    assert not matches({"assigned_to": "bo"}, vip, NOW)


def test_bool_is_not_a_number() -> None:
    assert not var("vip", "eq", 1, vip=True)
    assert not var("orders", "eq", True, orders=1)
    assert not var("orders", "gt", 0, orders=True)
    assert var("vip", "eq", True, vip=True)
    assert var("orders", "eq", 3, orders=3.0)
    assert var("orders", "in", [True, 3], orders=3)
    assert not var("orders", "in", [True], orders=1)


def test_order_compares_within_one_type_class() -> None:
    assert var("orders", "gte", 3, orders=3)
    assert not var("orders", "gt", 3, orders="4")
    assert var("city", "gt", "M", city="Madrid")
    assert not var("city", "lt", 10, city="Madrid")
    assert not var("orders", "lt", 10)  # missing never compares


@pytest.mark.parametrize(
    "equal",
    [3, 2.5, "Madrid", datetime(2025, 5, 1, tzinfo=UTC)],
)
def test_strict_and_inclusive_bounds_differ_exactly_at_equality(equal: Any) -> None:
    # "more than 3 orders" must not take a contact with 3; "at least 3" must.
    assert not var("x", "gt", equal, x=equal)
    assert var("x", "gte", equal, x=equal)
    assert not var("x", "lt", equal, x=equal)
    assert var("x", "lte", equal, x=equal)


def test_ne_matches_missing_and_lists_match_any_element() -> None:
    assert var("city", "ne", "Madrid")
    assert var("city", "ne", "Madrid", city=None)
    assert not var("items", "ne", "a", items=["a", "b"])
    assert var("items", "eq", "b", items=["a", "b"])
    assert var("items", "gt", 2, items=[1, 3])
    assert var("items", "lt", 2, items=[1, 3])
    assert not var("items", "eq", 3, items=[[3]])  # one level deep, as MongoDB


def test_exists_means_present_and_not_null() -> None:
    assert var("city", "exists", True, city="")
    assert not var("city", "exists", True, city=None)
    assert var("city", "exists", False, city=None)
    assert var("city", "exists", False)
    assert not var("city", "exists", True, city=[None])  # a list holding null reads as null


def test_contains() -> None:
    assert var("note", "contains", "mad", note="Visit MADRID")
    assert var("note", "contains", "a+b", note="x A+B y")  # punctuation is literal
    assert not var("note", "contains", "a.b", note="axb")
    assert var("items", "contains", "red", items=["blue", "Dark red"])
    assert not var("note", "contains", "3", note=3)
    assert var("items", "contains", 3, items=[1, 3.0])
    assert not var("items", "contains", 3, items=3)  # a scalar is not a list
    assert not var("items", "contains", True, items=[1])


def test_dates_compare_at_millisecond_precision() -> None:
    moment = datetime(2024, 1, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert var("birthday", "eq", moment, birthday=moment.replace(microsecond=123999))
    assert var("birthday", "eq", moment, birthday=moment.replace(tzinfo=None))  # naive is UTC
    assert var("birthday", "lt", {"$date": "2000-01-01T00:00:00Z"}, birthday=datetime(1999, 12, 31))
    assert not var("birthday", "lt", {"$date": "2000-01-01"}, birthday="1999-12-31")


def test_dates_order_by_the_moment_they_name_to_the_millisecond() -> None:
    """Within one second the milliseconds order dates, one millisecond apart is not equal, and an
    offset names the same moment as its UTC reading (a variable set with ``+02:00`` in a turn)."""
    second = datetime(2024, 1, 1, 10, 0, 0, tzinfo=UTC)
    earlier, later = second.replace(microsecond=100_000), second.replace(microsecond=200_000)
    assert var("seen", "gt", earlier, seen=later)
    assert not var("seen", "gt", later, seen=earlier)
    assert not var("seen", "eq", second, seen=second.replace(microsecond=1_000))
    assert var("seen", "gt", second, seen=second.replace(microsecond=1_000))
    # The seconds outweigh the milliseconds: 10:00:01.000 is after 10:00:00.900.
    assert var("seen", "gt", second.replace(microsecond=900_000), seen=second + timedelta(seconds=1))
    in_madrid = later.astimezone(timezone(timedelta(hours=2)))  # 12:00:00.200+02:00
    assert var("seen", "eq", later, seen=in_madrid)
    assert var("seen", "lt", later + timedelta(hours=1), seen=in_madrid)
    assert not var("seen", "gt", later + timedelta(hours=1), seen=in_madrid)


def test_last_inbound_within_and_before() -> None:
    recent = contact(last_inbound_at=NOW - timedelta(hours=1))
    old = contact(last_inbound_at=NOW - timedelta(days=8))
    never = contact(last_inbound_at=None)
    assert matches({"last_inbound": {"within": "2h"}}, recent, NOW)
    assert not matches({"last_inbound": {"within": "2h"}}, old, NOW)
    assert matches({"last_inbound": {"before": "7d"}}, old, NOW)
    assert matches({"last_inbound": {"before": "7d"}}, never, NOW)  # never wrote: quiet for any d
    assert not matches({"last_inbound": {"within": "7d"}}, never, NOW)
    edge = contact(last_inbound_at=NOW - timedelta(hours=2))
    assert matches({"last_inbound": {"within": "2h"}}, edge, NOW)
    assert not matches({"last_inbound": {"before": "2h"}}, edge, NOW)


def test_phone_prefix_and_boolean_structure() -> None:
    spanish = contact()
    assert matches({"phone_prefix": "+34"}, spanish, NOW)
    assert not matches({"phone_prefix": "+346001112223"}, spanish, NOW)
    assert matches({"all": []}, spanish, NOW)
    assert not matches({"any": []}, spanish, NOW)
    assert matches({"not": {"any": []}}, spanish, NOW)
    assert matches(
        {"any": [{"tag": "x"}, {"all": [{"phone_prefix": "+3"}, {"not": {"opted_in": True}}]}]}, spanish, NOW
    )


# --- compiled filters -------------------------------------------------------------------------


def test_filter_shapes() -> None:
    assert to_mongo_filter({"all": []}, NOW) == {}
    assert to_mongo_filter({"any": []}, NOW) == MATCH_NONE
    assert to_mongo_filter({"all": [{"tag": "vip"}]}, NOW) == {"tags": {"$eq": "vip"}}
    assert to_mongo_filter({"not": {"tag": "vip"}}, NOW) == {"$nor": [{"tags": {"$eq": "vip"}}]}
    assert to_mongo_filter({"phone_prefix": "+34"}, NOW) == {"phone": {"$regex": "^\\x2b34"}}
    assert to_mongo_filter({"var": "note", "op": "contains", "value": "a.b"}, NOW) == {
        "variables.note": {"$regex": "a\\x2eb", "$options": "i"}
    }
    assert to_mongo_filter({"last_inbound": {"within": "24h"}}, NOW) == {
        "last_inbound_at": {"$gte": NOW - timedelta(hours=24)}
    }


def test_cutoff_is_truncated_to_milliseconds_like_bson() -> None:
    now = NOW.replace(microsecond=999999)
    found = to_mongo_filter({"last_inbound": {"within": "1h"}}, now)
    assert found["last_inbound_at"]["$gte"].microsecond == 999000


def test_invalid_segments_are_refused_by_both_back_ends() -> None:
    with pytest.raises(InvalidInput):
        to_mongo_filter({"tag": 1}, NOW)
    with pytest.raises(InvalidInput):
        matches({"tag": 1}, contact(), NOW)


def test_a_date_without_an_offset_is_read_in_the_workspace_zone() -> None:
    """Condition nodes pass the workspace's zone: "2026-12-24" is midnight in Madrid (23:00 UTC)."""
    madrid_midnight = contact(variables={"birthday": datetime(2026, 12, 23, 23, 0, tzinfo=UTC)})
    same_day = {"var": "birthday", "op": "eq", "value": {"$date": "2026-12-24"}}
    assert matches(same_day, madrid_midnight, NOW, "Europe/Madrid")
    assert not matches(same_day, madrid_midnight, NOW)  # UTC when no zone is given
    local = {"var": "birthday", "op": "gte", "value": {"$date": "2026-12-24T00:00"}}
    assert matches(local, madrid_midnight, NOW, "Europe/Madrid")
    moment = to_mongo_filter(same_day, NOW, "Europe/Madrid")["variables.birthday"]["$eq"]
    assert moment == datetime(2026, 12, 23, 23, 0, tzinfo=UTC)
