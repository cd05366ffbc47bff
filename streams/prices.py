"""Prices: numbers or strings with currency symbols and codes, and the selling/list price choice.

A price is a :class:`Money` (``{"value": float, "currency": str | None}``) or None. Values that are
not positive, not finite or above :data:`MAX_PRICE` are dropped, as are values of absurd types;
a bad price never makes a product unusable. Ambiguities, decided here once: ``$`` is USD and
``¥`` is JPY unless a prefix says otherwise (``C$``, ``A$``, ...); one comma followed by one or
two digits is a decimal comma (``12,50``), otherwise commas group thousands (``1,299``,
``1,00,000``); one dot is a decimal point (``1.299`` is 1.299), several dots group thousands, except in
currencies priced in whole units (IDR, JPY, KRW, VND, ...), where ``Rp 15.000`` is 15000.
"""

from __future__ import annotations

import math
import re
from typing import Any, Final

from prodcat.schemas.records import Money
from prodcat.streams.fields import norm_key

__all__ = ["MAX_PRICE", "Money", "choose_prices", "currency_of", "parse_price"]

MAX_PRICE: Final = 1e9
_MAX_PRICE_TEXT: Final = 64


_SYMBOLS: Final = {
    "R$": "BRL",
    "US$": "USD",
    "C$": "CAD",
    "CA$": "CAD",
    "A$": "AUD",
    "AU$": "AUD",
    "HK$": "HKD",
    "S$": "SGD",
    "NZ$": "NZD",
    "MX$": "MXN",
    "$": "USD",
    "€": "EUR",
    "£": "GBP",
    "₹": "INR",
    "¥": "JPY",
    "￥": "JPY",
    "₩": "KRW",
    "₽": "RUB",
    "₺": "TRY",
    "₫": "VND",
    "₱": "PHP",
    "฿": "THB",
    "₪": "ILS",
    "₦": "NGN",
    "₴": "UAH",
    "zł": "PLN",
    "Kč": "CZK",
}
_CODES: Final = (
    "INR USD EUR GBP JPY CNY KRW RUB TRY VND PHP THB ILS NGN UAH PLN BRL CAD AUD HKD SGD NZD MXN "
    "CHF SEK NOK DKK CZK HUF RON BGN ZAR AED SAR QAR KWD EGP PKR BDT LKR NPR IDR MYR TWD ARS CLP "
    "COP PEN"
)
_WORDS: Final = {
    **{code.lower(): code for code in _CODES.split()},
    "rmb": "CNY",
    "rs": "INR",
    "rupees": "INR",
    "rupee": "INR",
    "rp": "IDR",
    "tl": "TRY",
    "lei": "RON",
    "rm": "MYR",
    "yen": "JPY",
    "euro": "EUR",
    "euros": "EUR",
    "dollar": "USD",
    "dollars": "USD",
}
_SYMBOL_RE: Final = re.compile(
    "|".join(re.escape(symbol) for symbol in sorted(_SYMBOLS, key=len, reverse=True))
)
_WORD_RE: Final = re.compile(r"(?<![A-Za-z])([A-Za-z]{2,7})(?![A-Za-z])")
_NUMBER_RE: Final = re.compile(r"([-\u2212]?)\s*(\d(?:[\d.,'\u00a0\u202f\u2009]*\d)?)")
# A plain space groups thousands only when exactly three digits follow ("1 299,50 €").
_SPACE_GROUPING: Final = re.compile(r"(?<=\d) (?=\d{3}(?!\d))")
_GROUPING: Final = str.maketrans("", "", "'\u00a0\u202f\u2009")
# Currencies priced in whole units: one "." or "," followed by three digits groups thousands there
# ("Rp 15.000", "15.000 IDR", "¥1,299").
_WHOLE_UNITS: Final = frozenset({"IDR", "JPY", "KRW", "VND", "CLP", "ISK", "HUF", "PYG", "UGX"})
_THOUSANDS: Final = re.compile(r"^\d{1,3}(?:[.,]\d{3})+$")
_AMOUNT_KEYS: Final = ("value", "amount", "price", "amountvalue", "val")


def currency_of(text: str) -> str | None:
    """ISO 4217 code named by a symbol or code in ``text`` (``"Rs. 1,299"`` -> ``"INR"``)."""
    for match in _WORD_RE.finditer(text):
        code = _WORDS.get(match.group(1).lower())
        if code is not None:
            return code
    symbol = _SYMBOL_RE.search(text)
    return _SYMBOLS[symbol.group(0)] if symbol is not None else None


def _number(token: str, whole: bool = False) -> float:
    token = token.translate(_GROUPING)
    if whole and _THOUSANDS.match(token):
        return float(token.replace(".", "").replace(",", ""))
    dots, commas = token.count("."), token.count(",")
    if dots and commas:
        decimal = "." if token.rfind(".") > token.rfind(",") else ","
        grouping = "," if decimal == "." else "."
        token = token.replace(grouping, "").replace(decimal, ".")
    elif commas:
        head, _, tail = token.rpartition(",")
        token = f"{head}.{tail}" if commas == 1 and len(tail) <= 2 else token.replace(",", "")
    elif dots > 1:
        token = token.replace(".", "")
    return float(token)


def _valid(value: float | int) -> float | None:
    if isinstance(value, int):
        return float(value) if 0 < value <= MAX_PRICE else None
    return value if math.isfinite(value) and 0 < value <= MAX_PRICE else None


def parse_price(raw: Any, currency: str | None = None) -> Money | None:
    """A price from a number, a string such as ``"₹1,299"`` or an object with an amount."""
    value: float | None = None
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        value = _valid(raw)
    elif isinstance(raw, str):
        if len(raw) > _MAX_PRICE_TEXT:
            return None
        try:  # the common case: a plain number ("379.0")
            value = _valid(float(raw))
        except ValueError:
            pass
        else:
            if currency in _WHOLE_UNITS and _THOUSANDS.match(raw.strip()):
                value = _valid(_number(raw.strip(), whole=True))
            return None if value is None else {"value": value, "currency": currency}
        text = _SPACE_GROUPING.sub("", raw) if " " in raw else raw
        match = _NUMBER_RE.search(text)
        if match is None or match.group(1):
            return None
        currency = currency_of(raw) or currency
        try:
            value = _valid(_number(match.group(2), whole=currency in _WHOLE_UNITS))
        except ValueError:
            return None
    elif isinstance(raw, dict):
        return _price_object(raw, currency)
    if value is None:
        return None
    return {"value": value, "currency": currency}


def _price_object(raw: dict[str, Any], currency: str | None) -> Money | None:
    fields = {norm_key(key): value for key, value in list(raw.items())[:16]}
    code = next(
        (fields[key] for key in ("currency", "currencycode", "currencyiso") if key in fields),
        None,
    )
    if isinstance(code, str) and len(code) <= _MAX_PRICE_TEXT:
        currency = currency_of(code) or currency
    for key in _AMOUNT_KEYS:
        amount = fields.get(key)
        if isinstance(amount, int | float | str):
            return parse_price(amount, currency)
    return None


def choose_prices(
    sale: Money | None, regular: Money | None, listed: Money | None
) -> tuple[Money | None, Money | None]:
    """(selling price, list price): the sale price when there is one, else the price.

    The list price is the explicit list/retail/MRP price, else the plain price when a sale price
    undercuts it; it is dropped when it equals the selling price. A missing currency on one is
    taken from the other.
    """
    price = sale or regular or listed
    original = listed if listed is not None else (regular if sale is not None else None)
    if price is None or original is None or original is price:
        return price, None
    if price["currency"] is None and original["currency"] is not None:
        price = {"value": price["value"], "currency": original["currency"]}
    elif original["currency"] is None and price["currency"] is not None:
        original = {"value": original["value"], "currency": price["currency"]}
    if original["value"] == price["value"]:
        return price, None
    return price, original
