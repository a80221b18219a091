"""Placeholders write values the way the workspace's locale writes them, or in a format the author
names (``{{contact.birthday|date:long}}``); see docs/sandbox.md."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from server.machines.placeholders import format_problems, render
from server.machines.regional import Regional

MADRID = Regional("Europe/Madrid", "es-ES")
NEW_YORK = Regional("America/New_York", "en-US")

CONTACT: dict[str, Any] = {
    "phone": "+34600000000",
    "variables": {
        "birthday": datetime(2026, 12, 23, 23),  # stored: midnight in Madrid, as BSON gives it back
        "visit": datetime(2026, 12, 24, 9, 30),
        "total": 1234.5,
        "orders": 1234,
        "vip": True,
        "city": "Madrid",
    },
}
RUN: dict[str, Any] = {
    "trigger": {"amount": "1234.5", "order_id": 1234567, "when": "2026-12-24"},
    "reply": "sí",
}


@pytest.mark.parametrize(
    ("text", "regional", "expected"),
    [
        ("{{contact.birthday}}", MADRID, "24/12/2026"),
        ("{{contact.birthday}}", NEW_YORK, "12/23/2026, 6:00\u202fPM"),  # not midnight there (CLDR spaces)
        ("{{contact.visit}}", MADRID, "24/12/2026, 10:30"),
        ("{{contact.total}}", MADRID, "1.234,50"),
        ("{{contact.total}}", NEW_YORK, "1,234.50"),
        ("{{contact.orders}}", MADRID, "1.234"),
        ("{{contact.vip}}", MADRID, "sí"),
        ("{{contact.vip}}", NEW_YORK, "yes"),
        ("{{contact.city}}", MADRID, "Madrid"),
        # values from a trigger or a reply are written as they came
        ("{{trigger.order_id}} {{trigger.amount}} {{run.reply}}", MADRID, "1234567 1234.5 sí"),
    ],
)
def test_values_are_written_the_locale_way(text: str, regional: Regional, expected: str) -> None:
    assert render(text, CONTACT, RUN, regional) == (expected, [])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{contact.birthday|date}}", "24/12/2026"),
        ("{{contact.birthday | date : long}}", "24 de diciembre de 2026"),
        ("{{contact.birthday|date:full}}", "jueves, 24 de diciembre de 2026"),
        ("{{contact.birthday|date:%Y-%m-%d}}", "2026-12-24"),
        ("{{contact.birthday|date:%A %-d de %B}}", "jueves 24 de diciembre"),
        ("{{contact.visit|time}}", "10:30"),
        ("{{contact.visit|datetime:%d/%m %H:%M}}", "24/12 10:30"),
        ("{{contact.visit|datetime:medium}}", "24 dic 2026, 10:30:00"),
        ("{{contact.total|number:0}}", "1.235"),  # half up, as shops round
        ("{{contact.orders|number:2}}", "1.234,00"),
        ("{{contact.total|currency}}", "1.234,50\xa0€"),  # the locale's country's currency
        ("{{contact.total|currency:USD}}", "1.234,50\xa0US$"),
        ("{{trigger.amount|number}}", "1.234,50"),  # texts are read as numbers first
        ("{{trigger.when|date:long}}", "24 de diciembre de 2026"),  # ... or as dates
    ],
)
def test_a_named_format(text: str, expected: str) -> None:
    assert render(text, CONTACT, RUN, MADRID) == (expected, [])


def test_a_format_that_does_not_fit_writes_the_value_and_says_why() -> None:
    text, warnings = render("{{contact.city|date}} / {{contact.total|colour}}", CONTACT, RUN, MADRID)
    assert text == "Madrid / 1.234,50"
    assert warnings == [
        "placeholder {{contact.city|date}}: 'Madrid' is not a date, so |date cannot write it; "
        "written without the format",
        "placeholder {{contact.total|colour}}: unknown format 'colour'; use one of date, datetime, "
        "time, number, currency; written without the format",
    ]


def test_a_missing_value_still_renders_empty_with_a_warning() -> None:
    assert render("Hola {{contact.nope|date}}", CONTACT, RUN, MADRID) == (
        "Hola ",
        ["placeholder {{contact.nope}} has no value; rendered empty"],
    )


def test_format_problems_for_validation() -> None:
    assert format_problems("{{contact.a|date:%Y}} {{contact.b|number:9}} {{contact.c|date:someday}}") == [
        "{{contact.b|number:9}}: number:9: give the decimals to show, 0 to 6",
        "{{contact.c|date:someday}}: date:someday is neither a style (short, medium, long, full) "
        "nor a pattern like %d/%m/%Y",
    ]
