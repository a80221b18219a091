"""coerce_value: what customers type on WhatsApp becomes the typed value a field stores."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from server.errors import InvalidInput
from server.machines.values import coerce_value, fold


def test_none_clears_every_type() -> None:
    for kind in ("TEXT", "NUMBER", "BOOLEAN", "DATE", "FIXED"):
        assert coerce_value(kind, ["a"], None) is None


def test_unknown_type_is_refused() -> None:
    with pytest.raises(InvalidInput, match="unknown field type 'COLOR'"):
        coerce_value("COLOR", None, "red")


# --- TEXT ---


def test_text_is_trimmed_and_scalars_become_text() -> None:
    assert coerce_value("TEXT", None, "  Madrid ") == "Madrid"
    assert coerce_value("TEXT", None, 42) == "42"
    assert coerce_value("TEXT", None, True) == "true"


def test_text_refuses_objects_and_huge_text() -> None:
    with pytest.raises(InvalidInput, match="is not a TEXT"):
        coerce_value("TEXT", None, {"a": 1})
    with pytest.raises(InvalidInput, match="too long"):
        coerce_value("TEXT", None, "x" * 5000)


# --- NUMBER ---


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("3", 3),
        ("3,5", 3.5),
        ("  12 ", 12),
        ("-7", -7),
        ("+2.25", 2.25),
        (".5", 0.5),
        ("1.234,5", 1234.5),
        ("1,234.5", 1234.5),
        ("1 234", 1234),
        ("1.234.567", 1234567),
        (42, 42),
        (2.5, 2.5),
    ],
)
def test_number_spellings(raw: object, expected: float) -> None:
    value = coerce_value("NUMBER", None, raw)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize("raw", ["abc", "", "1e5", "3 kg", "1,2,3,4", True, float("nan"), [1], 2**70])
def test_number_refusals_say_what_is_expected(raw: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        coerce_value("NUMBER", None, raw)
    assert "is not a NUMBER (expected " in caught.value.message
    assert caught.value.details["fieldType"] == "NUMBER"


def test_number_message_quotes_the_reply() -> None:
    with pytest.raises(InvalidInput) as caught:
        coerce_value("NUMBER", None, "abc")
    assert caught.value.message == "'abc' is not a NUMBER (expected digits like 42 or 3.5)"


# --- BOOLEAN ---


@pytest.mark.parametrize("raw", ["sí", "Sí", "SI", "si", "yes", "Yes", "true", "1", "¡Sí!", "ok", True, 1])
def test_boolean_true(raw: object) -> None:
    assert coerce_value("BOOLEAN", None, raw) is True


@pytest.mark.parametrize("raw", ["no", "NO", "No.", "false", "0", "falso", False, 0])
def test_boolean_false(raw: object) -> None:
    assert coerce_value("BOOLEAN", None, raw) is False


@pytest.mark.parametrize("raw", ["maybe", "", "2", 2, 1.5, "sin"])
def test_boolean_refusals(raw: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        coerce_value("BOOLEAN", None, raw)
    assert "is not a BOOLEAN" in caught.value.message
    assert "yes/no" in caught.value.message


# --- DATE ---


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-12-24", datetime(2026, 12, 24, tzinfo=UTC)),
        ("24/12/2026", datetime(2026, 12, 24, tzinfo=UTC)),
        ("1/5/2026", datetime(2026, 5, 1, tzinfo=UTC)),
        (" 24-12-2026 ", datetime(2026, 12, 24, tzinfo=UTC)),
        ("2026-12-24T10:00:00+02:00", datetime(2026, 12, 24, 8, tzinfo=UTC)),
        ("2026-12-24T10:00:00Z", datetime(2026, 12, 24, 10, tzinfo=UTC)),
        ("2026-12-24T10:00", datetime(2026, 12, 24, 10, tzinfo=UTC)),
        (date(2026, 1, 2), datetime(2026, 1, 2, tzinfo=UTC)),
        (datetime(2026, 1, 2, 3, 4, 5, 123456), datetime(2026, 1, 2, 3, 4, 5, 123000, tzinfo=UTC)),
        ({"$date": "2026-03-01T00:00:00Z"}, datetime(2026, 3, 1, tzinfo=UTC)),
    ],
)
def test_date_spellings_become_aware_utc(raw: object, expected: datetime) -> None:
    value = coerce_value("DATE", None, raw)
    assert value == expected
    assert isinstance(value, datetime) and value.utcoffset() == timedelta(0)


def test_date_with_offset_is_converted_to_utc() -> None:
    madrid = timezone(timedelta(hours=1))
    value = coerce_value("DATE", None, datetime(2026, 1, 1, 0, 30, tzinfo=madrid))
    assert value == datetime(2025, 12, 31, 23, 30, tzinfo=UTC)
    assert value.tzinfo == UTC  # type: ignore[union-attr]


@pytest.mark.parametrize("raw", ["31/02/2026", "tomorrow", "2026-13-01", "12/2026", 20261224, ""])
def test_date_refusals(raw: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        coerce_value("DATE", None, raw)
    assert "is not a DATE" in caught.value.message
    assert "24/12/2026" in caught.value.message


# --- FIXED ---

CITIES = ["Madrid", "Barcelona", "Málaga"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("madrid", "Madrid"), (" BARCELONA ", "Barcelona"), ("malaga", "Málaga"), ("MÁLAGA!", "Málaga")],
)
def test_fixed_returns_the_canonical_option(raw: str, expected: str) -> None:
    assert coerce_value("FIXED", CITIES, raw) == expected


def test_fixed_numbers_match_textual_options() -> None:
    assert coerce_value("FIXED", ["1", "2"], 2) == "2"


def test_fixed_refusal_lists_the_options() -> None:
    with pytest.raises(InvalidInput) as caught:
        coerce_value("FIXED", CITIES, "Sevilla")
    assert (
        caught.value.message == "'Sevilla' is not a FIXED option (expected one of: Madrid, Barcelona, Málaga)"
    )


def test_fixed_without_options_refuses_everything() -> None:
    with pytest.raises(InvalidInput, match="no options configured"):
        coerce_value("FIXED", None, "x")


def test_fold_ignores_case_accents_and_spacing() -> None:
    assert fold("  Sí   Señor ") == "si senor"
