"""Rate card lookups: country by calling code, free sends inside the window, reconciliation."""

from __future__ import annotations

import pytest

from server.channels.whatsapp.costs import country_of, estimate, load_rate_card, reconcile


@pytest.mark.parametrize(
    ("phone", "country"),
    [
        ("+34600111222", "ES"),
        ("+12425550100", "BS"),
        ("+12125550100", "US"),
        ("+14165550100", "CA"),
        ("+18095550100", "DO"),
        ("+77011234567", "KZ"),
        ("+79161234567", "RU"),
        ("+5491123456789", "AR"),
        ("+436641234567", "AT"),
        ("+999", None),
    ],
)
def test_country_of(phone: str, country: str | None) -> None:
    assert country_of(phone) == country


def test_card_is_dated_and_sourced() -> None:
    card = load_rate_card()
    assert (
        card.currency == "USD"
        and card.valid_from == "2026-01-01"
        and "developers.facebook.com" in card.source
    )


def test_estimate_by_category_country_and_window() -> None:
    assert estimate("MARKETING", "+5491123456789", window_open=False)["amount"] == pytest.approx(0.0618)
    assert estimate("MARKETING", "+5491123456789", window_open=True)["amount"] == pytest.approx(0.0618)
    utility_in_window = estimate("UTILITY", "+436641234567", window_open=True)
    assert utility_in_window["amount"] == 0 and utility_in_window["billable"] is False
    assert estimate("UTILITY", "+436641234567", window_open=False)["amount"] == pytest.approx(0.0171)
    assert estimate("AUTHENTICATION", "+436641234567", window_open=True)["amount"] == pytest.approx(0.0171)
    unknown = estimate("MARKETING", "+999", window_open=False)
    assert unknown["amount"] is None and "no MARKETING rate for this number" in unknown["reason"]
    no_international = estimate("AUTHENTICATION_INTERNATIONAL", "+34600111222", window_open=False)
    assert no_international["amount"] is None and "for ES" in no_international["reason"]


@pytest.mark.parametrize(
    ("phone", "country", "market"),
    [
        ("+34600111222", "ES", "Spain"),
        ("+5215512345678", "MX", "Mexico"),
        ("+919812345678", "IN", "India"),
        ("+12125550100", "US", "North America"),
    ],
)
@pytest.mark.parametrize("category", ["MARKETING", "UTILITY", "AUTHENTICATION"])
def test_big_markets_are_priced_for_every_category(
    phone: str, country: str, market: str, category: str
) -> None:
    priced = estimate(category, phone, window_open=False)
    assert (priced["country"], priced["market"]) == (country, market)
    assert priced["billable"] and priced["amount"] is not None and priced["amount"] > 0


def test_countries_on_no_row_are_priced_as_other() -> None:
    card = load_rate_card()
    assert card.rate("MARKETING", "KZ") == ("Other", pytest.approx(0.0604))
    assert card.rate("MARKETING", None) == (None, None)
    international = estimate("AUTHENTICATION_INTERNATIONAL", "+919812345678", window_open=False)
    assert international["amount"] == pytest.approx(0.028)


def test_reconcile_with_the_pricing_block() -> None:
    message = {"phone": "+5491123456789", "cost_estimate": {"country": "AR", "amount": 0.0618}}
    charged = reconcile(
        message, {"billable": True, "pricing_model": "PMP", "category": "marketing", "type": "regular"}
    )
    assert charged["cost_actual"]["amount"] == pytest.approx(0.0618) and charged["cost_actual"]["billable"]
    free = reconcile(
        message,
        {"billable": False, "pricing_model": "PMP", "category": "utility", "type": "free_customer_service"},
    )
    assert free["cost_actual"]["amount"] == 0 and free["cost_actual"]["billable"] is False
    service = reconcile(message, {"billable": True, "pricing_model": "CBP", "category": "service"})
    assert service["cost_actual"]["amount"] == 0
    assert reconcile(message, None) == {}
