"""Dates and numbers typed by customers, read in the workspace's time zone and locale (issue 14, item 10)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from server.errors import InvalidInput
from server.machines.regional import Regional, default_locale, normalize_locale
from server.machines.values import coerce_value

MADRID = Regional("Europe/Madrid", "es-ES")
NEW_YORK = Regional("America/New_York", "en-US")
TOKYO = Regional("Asia/Tokyo", "ja-JP")


@pytest.mark.parametrize(
    ("raw", "regional", "expected"),
    [
        # a day alone is its midnight in the workspace's zone, not UTC's
        ("24/12/2026", MADRID, datetime(2026, 12, 23, 23, tzinfo=UTC)),
        ("2026-12-24", MADRID, datetime(2026, 12, 23, 23, tzinfo=UTC)),
        ("24/06/2026", MADRID, datetime(2026, 6, 23, 22, tzinfo=UTC)),  # summer time
        ("5/1/2026", MADRID, datetime(2026, 1, 4, 23, tzinfo=UTC)),  # day first: 5 January
        ("5/1/2026", NEW_YORK, datetime(2026, 5, 1, 4, tzinfo=UTC)),  # month first: May 1
        ("12/24/2026", MADRID, datetime(2026, 12, 23, 23, tzinfo=UTC)),  # cannot be day-first
        ("24/12/2026", NEW_YORK, datetime(2026, 12, 24, 5, tzinfo=UTC)),  # cannot be month-first
        ("2026/12/24", TOKYO, datetime(2026, 12, 23, 15, tzinfo=UTC)),
        ("24/12/26", MADRID, datetime(2026, 12, 23, 23, tzinfo=UTC)),
        ("3/4/85", MADRID, datetime(1985, 4, 2, 22, tzinfo=UTC)),
        ("24.12.2026 10:30", MADRID, datetime(2026, 12, 24, 9, 30, tzinfo=UTC)),
        ("24/12/2026, 22:05", MADRID, datetime(2026, 12, 24, 21, 5, tzinfo=UTC)),
        ("12/24/2026 10:30 pm", NEW_YORK, datetime(2026, 12, 25, 3, 30, tzinfo=UTC)),
        ("2026-12-24T10:00", MADRID, datetime(2026, 12, 24, 9, tzinfo=UTC)),  # naive text is local
        ("2026-12-24T10:00:00Z", MADRID, datetime(2026, 12, 24, 10, tzinfo=UTC)),  # an offset wins
        ("24 de diciembre de 2026", MADRID, datetime(2026, 12, 23, 23, tzinfo=UTC)),
        ("24 dic. 2026", MADRID, datetime(2026, 12, 23, 23, tzinfo=UTC)),
        ("Diciembre 24, 2026", MADRID, datetime(2026, 12, 23, 23, tzinfo=UTC)),
        ("December 24th, 2026", NEW_YORK, datetime(2026, 12, 24, 5, tzinfo=UTC)),
        ("24 December 2026", MADRID, datetime(2026, 12, 23, 23, tzinfo=UTC)),  # English names too
    ],
)
def test_dates_are_read_in_the_workspace_zone_and_locale(
    raw: str, regional: Regional, expected: datetime
) -> None:
    assert coerce_value("DATE", None, raw, regional) == expected


def test_stored_moments_keep_their_instant() -> None:
    stored = datetime(2026, 12, 23, 23)  # BSON gives naive UTC back
    assert coerce_value("DATE", None, stored, MADRID) == datetime(2026, 12, 23, 23, tzinfo=UTC)


@pytest.mark.parametrize(
    "raw",
    ["31/02/2026", "24 de diciembre", "24 de brumario de 2026", "13/13/2026", "24/12/2026 25:00", "mañana"],
)
def test_impossible_dates_are_refused_with_the_locale_example(raw: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        coerce_value("DATE", None, raw, NEW_YORK)
    assert "is not a DATE (expected a date like 12/24/2026 or 2026-12-24" in caught.value.message


@pytest.mark.parametrize(
    ("raw", "regional", "expected"),
    [
        ("1.234", MADRID, 1234),  # "." groups thousands in Spain
        ("1.234", NEW_YORK, 1.234),
        ("1,234", MADRID, 1.234),
        ("1,234", NEW_YORK, 1234),
        ("1.234,50", MADRID, 1234.5),
        ("1,234.50", NEW_YORK, 1234.5),
        ("12,50 €", MADRID, 12.5),
        ("$1,234", NEW_YORK, 1234),
        ("3,5", MADRID, 3.5),
    ],
)
def test_numbers_are_read_with_the_locale_marks(raw: str, regional: Regional, expected: float) -> None:
    value = coerce_value("NUMBER", None, raw, regional)
    assert value == expected and type(value) is type(expected)


def test_without_regional_settings_dates_are_utc_and_a_lone_mark_is_decimal() -> None:
    assert coerce_value("DATE", None, "24/12/2026") == datetime(2026, 12, 24, tzinfo=UTC)
    assert coerce_value("NUMBER", None, "1.234") == 1.234


@pytest.mark.parametrize(
    ("timezone", "country", "expected"),
    [
        ("Europe/Madrid", None, "es-ES"),
        ("America/Mexico_City", None, "es-MX"),
        ("America/New_York", None, "en-US"),
        ("America/Sao_Paulo", None, "pt-BR"),
        ("UTC", "MX", "es-MX"),  # the default country for phone numbers says where the shop is
        ("UTC", None, "en-GB"),
        (None, None, "en-GB"),
    ],
)
def test_default_locale_comes_from_what_the_workspace_has(
    timezone: str | None, country: str | None, expected: str
) -> None:
    assert default_locale(timezone, country) == expected


def test_locales_are_normalised_and_unknown_ones_refused() -> None:
    assert normalize_locale("es_es") == "es-ES"
    assert normalize_locale("pt-BR") == "pt-BR"
    with pytest.raises(InvalidInput, match="not a known locale"):
        normalize_locale("xx-YY")
    with pytest.raises(InvalidInput, match="must be a language tag"):
        normalize_locale("spanish please")
