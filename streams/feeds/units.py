"""Amounts of money, quantities with units and unit prices inside short texts.

Used to tell a product's price from what merely looks like one: a unit price (``€4,50/lt``,
``1 kg = 9,97 €``), a measurement (``3000 ml``, ``13,5 %``), and to check a price's scale: when a
record says ``0,75l (1 l = 6,65 €)`` the product costs about 4.99, so an integer ``499`` next to
it is in cents (:func:`expected_prices`).
"""

from __future__ import annotations

import re
from typing import Final

from prodcat.streams.prices import currency_of

__all__ = ["expected_prices", "is_measure", "is_unit_price", "money_in", "quantities"]

_MAX_TEXT: Final = 200
_NUM: Final = r"\d+(?:[.,]\d+)?"
_SYMBOLS: Final = r"R\$|US\$|A\$|C\$|zł|\bRp|\bRs\.?|\bRM|[€£$¥￥₹₩₽₺₫₱฿₪₦₴]"
_CODE: Final = r"\b[A-Z]{3}\b"
_MONEY: Final = re.compile(
    rf"(?:(?P<pre>{_SYMBOLS}|{_CODE})\s?(?P<n1>{_NUM}))|(?:(?P<n2>{_NUM})\s?(?P<post>{_SYMBOLS}|{_CODE}))"
)
# unit -> (dimension, size in the dimension's base unit)
_UNITS: Final[dict[str, tuple[str, float]]] = {
    "mg": ("mass", 0.001),
    "g": ("mass", 1.0),
    "gr": ("mass", 1.0),
    "grs": ("mass", 1.0),
    "kg": ("mass", 1000.0),
    "lb": ("mass", 453.592),
    "lbs": ("mass", 453.592),
    "oz": ("mass", 28.3495),
    "ml": ("volume", 1.0),
    "cl": ("volume", 10.0),
    "dl": ("volume", 100.0),
    "l": ("volume", 1000.0),
    "lt": ("volume", 1000.0),
    "ltr": ("volume", 1000.0),
    "liter": ("volume", 1000.0),
    "litre": ("volume", 1000.0),
    "litro": ("volume", 1000.0),
    "un": ("count", 1.0),
    "und": ("count", 1.0),
    "ud": ("count", 1.0),
    "uds": ("count", 1.0),
    "stk": ("count", 1.0),
    "st": ("count", 1.0),
    "stück": ("count", 1.0),
    "pc": ("count", 1.0),
    "pcs": ("count", 1.0),
    "piece": ("count", 1.0),
    "pieces": ("count", 1.0),
    "adet": ("count", 1.0),
    "szt": ("count", 1.0),
    "ks": ("count", 1.0),
    "m": ("length", 100.0),
    "cm": ("length", 1.0),
    "mm": ("length", 0.1),
}
_UNIT: Final = "|".join(sorted((re.escape(unit) for unit in _UNITS), key=len, reverse=True))
_QUANTITY: Final = re.compile(
    rf"(?:(?P<count>\d+)\s?[x\u00d7]\s?)?(?P<num>{_NUM})\s?(?P<unit>{_UNIT})(?![^\W\d_])", re.I
)
_PERCENT: Final = re.compile(rf"{_NUM}\s?%")
_PER: Final = r"(?:/|\bper\b|\bpro\b|\bpor\b|\bpar\b|\bje\b)"
_PER_HINT: Final = re.compile(_PER, re.I)
_UNIT_PRICE_EQ: Final = re.compile(
    rf"(?:(?P<q>{_NUM})\s?)?(?P<unit>{_UNIT})\s?=\s?(?P<money>(?:{_SYMBOLS}|{_CODE})?\s?{_NUM}\s?(?:{_SYMBOLS}|{_CODE})?)",
    re.I,
)
_UNIT_PRICE_PER: Final = re.compile(
    rf"(?P<money>(?:{_SYMBOLS}|{_CODE})\s?{_NUM}|{_NUM}\s?(?:{_SYMBOLS}|{_CODE}))\s?{_PER}\s?(?:(?P<q>{_NUM})\s?)?(?P<unit>{_UNIT})(?![^\W\d_])",
    re.I,
)


_MONEY_HINT: Final = re.compile(rf"{_SYMBOLS}|{_CODE}")
_UNIT_HINT: Final = re.compile(rf"\d\s?(?:{_UNIT})(?![^\W\d_])", re.I)


def _number(text: str) -> float:
    return float(text.replace(",", "."))


def money_in(text: str) -> list[tuple[float, str]]:
    """(amount, ISO code) for each amount written next to a currency symbol or code."""
    if len(text) > _MAX_TEXT or _MONEY_HINT.search(text) is None:
        return []
    found: list[tuple[float, str]] = []
    for match in _MONEY.finditer(text):
        token = match.group("pre") or match.group("post")
        code = currency_of(token)
        if code is None:
            continue
        number = match.group("n1") or match.group("n2")
        try:
            found.append((_number(number), code))
        except ValueError:
            continue
    return found


def _unit_prices(text: str) -> list[tuple[str, float, tuple[int, int]]]:
    """(dimension, amount per base unit, span) for each unit price in ``text``."""
    found: list[tuple[str, float, tuple[int, int]]] = []
    if _MONEY_HINT.search(text) is None or ("=" not in text and _PER_HINT.search(text) is None):
        return found
    for pattern in (_UNIT_PRICE_EQ, _UNIT_PRICE_PER):
        for match in pattern.finditer(text):
            amounts = money_in(match.group("money"))
            if not amounts:
                continue
            dimension, size = _UNITS[match.group("unit").lower()]
            quantity = _number(match.group("q")) if match.group("q") else 1.0
            if quantity <= 0:
                continue
            found.append((dimension, amounts[0][0] / (quantity * size), match.span()))
    return found


def is_unit_price(text: str) -> bool:
    """Whether ``text`` states a price per unit of measure."""
    return (
        len(text) <= _MAX_TEXT and any(char.isdigit() for char in text) and bool(_unit_prices(text))
    )


def quantities(text: str) -> list[tuple[str, float]]:
    """(dimension, amount in base units) for each quantity outside the unit prices of ``text``."""
    if len(text) > _MAX_TEXT or not any(char.isdigit() for char in text):
        return []
    if _UNIT_HINT.search(text) is None:
        return []
    spans = [span for _, _, span in _unit_prices(text)]
    found: list[tuple[str, float]] = []
    for match in _QUANTITY.finditer(text):
        if any(start <= match.start() < end for start, end in spans):
            continue
        dimension, size = _UNITS[match.group("unit").lower()]
        count = int(match.group("count")) if match.group("count") else 1
        found.append((dimension, count * _number(match.group("num")) * size))
    return found


def is_measure(text: str) -> bool:
    """Whether ``text`` is a quantity with a unit or a percentage, not an amount of money."""
    if len(text) > 40 or not any(char.isdigit() for char in text) or money_in(text):
        return False
    return bool(_PERCENT.search(text) or _QUANTITY.search(text))


def expected_prices(texts: list[str]) -> list[float]:
    """Prices implied by the unit prices and quantities found together in ``texts``
    (the strings of one record): unit price x quantity, for each pair of the same dimension."""
    short = [text for text in texts if len(text) <= _MAX_TEXT]
    prices = [
        (dimension, per_unit)
        for text in short
        if _MONEY_HINT.search(text) is not None
        for dimension, per_unit, _ in _unit_prices(text)
    ]
    if not prices:
        return []
    amounts = [found for text in short for found in quantities(text)]
    return [
        per_unit * amount
        for dimension, per_unit in prices
        for other, amount in amounts
        if dimension == other and amount > 0
    ]
