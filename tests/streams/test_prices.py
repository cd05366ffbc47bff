"""Price parsing (numbers, strings with currency) and the selling/list price choice."""

from __future__ import annotations

from typing import Any

import pytest

from prodcat.streams.prices import Money, choose_prices, currency_of, parse_price


@pytest.mark.parametrize(
    ("raw", "value", "currency"),
    [
        (379, 379.0, None),
        (12.5, 12.5, None),
        ("379.0", 379.0, None),
        ("Rs. 1,299", 1299.0, "INR"),
        ("Rs.1,299.50", 1299.5, "INR"),
        ("₹999", 999.0, "INR"),
        ("₹ 1,00,000", 100000.0, "INR"),
        ("$12.50", 12.5, "USD"),
        ("US$ 12", 12.0, "USD"),
        ("C$12", 12.0, "CAD"),
        ("12,50 EUR", 12.5, "EUR"),
        ("1.299,95 €", 1299.95, "EUR"),
        ("1 299,50\u00a0€", 1299.5, "EUR"),
        ("12 50", 12.0, None),  # a space groups thousands only before three digits
        ("1\u202f299,50 €", 1299.5, "EUR"),
        ("1299 INR", 1299.0, "INR"),
        ("inr 1299", 1299.0, "INR"),
        ("£5", 5.0, "GBP"),
        ("1.299.000", 1299000.0, None),
        ("1,299", 1299.0, None),
        ("USD 1,299.99", 1299.99, "USD"),
        ("Price: 20 USD", 20.0, "USD"),
        ("12.50 - 15.00", 12.5, None),
    ],
)
def test_parse(raw: Any, value: float, currency: str | None) -> None:
    money = parse_price(raw)
    assert money == {"value": value, "currency": currency}


@pytest.mark.parametrize(
    "raw",
    [
        -5,
        0,
        "-12.50",
        "\u22123",
        float("nan"),
        float("inf"),
        "NaN",
        "inf",
        2e9,
        10**400,
        True,
        None,
        [1],
        {"weird": 1},
        "call for price",
        "",
        "x" * 100,
    ],
)
def test_dropped(raw: Any) -> None:
    assert parse_price(raw) is None


def test_price_objects_and_currency_fields() -> None:
    assert parse_price({"amount": "12.5", "currency": "usd"}) == {"value": 12.5, "currency": "USD"}
    assert parse_price({"value": 3, "currencyCode": "EUR"}) == {"value": 3.0, "currency": "EUR"}
    assert parse_price("12", "GBP") == {"value": 12.0, "currency": "GBP"}
    assert parse_price("€12", "GBP") == {"value": 12.0, "currency": "EUR"}  # the string wins


def test_currency_of() -> None:
    assert currency_of("Rs.") == "INR"
    assert currency_of("R$ 10") == "BRL"
    assert currency_of("HK$10") == "HKD"
    assert currency_of("¥500") == "JPY"
    assert currency_of("500") is None
    assert currency_of("Price") is None


def money(value: float, currency: str | None = None) -> Money:
    return {"value": value, "currency": currency}


def test_choose_prices() -> None:
    # Flipkart: discounted_price and retail_price.
    assert choose_prices(money(379), None, money(999)) == (money(379), money(999))
    # Myntra: discountedPrice and price.
    assert choose_prices(money(324), money(649), None) == (money(324), money(649))
    assert choose_prices(None, money(649), None) == (money(649), None)
    assert choose_prices(None, None, money(999)) == (money(999), None)
    assert choose_prices(None, money(5), money(5)) == (money(5), None)  # same: no list price
    assert choose_prices(money(5, "EUR"), None, money(7)) == (money(5, "EUR"), money(7, "EUR"))
    assert choose_prices(None, None, None) == (None, None)
