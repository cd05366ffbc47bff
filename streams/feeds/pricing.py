"""Finding a feed's selling price, list price, their scale and currency from its values.

A price column parses as money in nearly every row, is not a unit price (``€4,50/lt``), a
measurement (``3000 ml``, ``13,5 %``), a date, a year, an id or a ratio with three decimals,
and is named like a price or carries currency symbols. Of two such columns whose values are
ordered on the rows where both are set, the lower is the selling price and the higher the list
price; a sparse lower one (an offer price) falls back to the other.

Integer cents are decided from evidence, never from magnitudes alone: the record's own unit price
and quantity imply the price (``0,75l (1 l = 6,65 €)`` -> about 4.99, so ``499`` is in cents), or a
sibling amount with decimals is a hundredth of it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from statistics import median
from typing import Any, Final

from prodcat.streams.feeds.keynames import path_words
from prodcat.streams.feeds.profile import FieldSource
from prodcat.streams.feeds.stats import Column, Sample
from prodcat.streams.feeds.units import expected_prices, money_in
from prodcat.streams.prices import currency_of

__all__ = ["find_prices"]

_DATE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}|^\d{1,2}[./-]\d{1,2}[./-]\d{2,4}$")
_NOT_PRICE_WORDS: Final = (
    "rating ratings rate score stars review reviews stock quantity qty "
    "count weight gewicht volume vol alcohol abv vat tax rank "
    "ranking year size length width height depth percent pct age "
    "id code ean gtin number liter litre kg unit units "
    "per discount"
)
_NOT_PRICE: Final = frozenset(_NOT_PRICE_WORDS.split())
_WORD_RUN: Final = re.compile(r"[^\W\d_]{3,}")
_CENT_RATIO: Final = (93.0, 107.0)
_UNIT_RATIO: Final = (0.93, 1.07)
_MIN_EVIDENCE: Final = 8
_MAX_EVIDENCE_ROWS: Final = 400
_MIN_EVIDENCE_ROWS: Final = 100


def _price_prior(column: Column) -> float:
    return max(column.prior("price"), 0.5 * column.prior("sale"), 0.5 * column.prior("list"))


def _negative(column: Column) -> bool:
    last, _ = path_words(column.path)
    return any(token in _NOT_PRICE for token in last) and column.prior("price") < 1.0


def _score(column: Column) -> float:
    """How much ``column`` looks like a price (0 when it cannot be one)."""
    if column.fill < 0.02 or column.list_ratio > 0.1:
        return 0.0
    if column.num_ratio + column.str_ratio * column.digit_share < 0.9:
        return 0.0  # cheap test first: most values hold no number at all
    if column.price_parse_ratio < 0.9:
        return 0.0
    if column.unit_price_ratio > 0.3 or column.measure_ratio > 0.3 or column.long_decimals > 0.3:
        return 0.0
    if column.strings and _worded(column.strings) > 0.5:
        return 0.0  # a number in words ("25 sold", "3 colours"), not an amount of money
    if column.strings and sum(1 for t in column.strings if _DATE.match(t)) > 0.3 * len(
        column.strings
    ):
        return 0.0
    amounts = list(column.amounts.values())
    if not amounts or all(1900 <= a <= 2100 and a == int(a) for a in amounts):
        return 0.0
    prior = _price_prior(column)
    symbols = column.money_ratio >= 0.5
    if _negative(column) and not symbols:
        return 0.0
    unique = column.uniqueness >= 0.95 and len(amounts) >= 20
    if column.integral and unique and prior == 0 and not symbols:
        return 0.0  # unique integers: ids
    if prior == 0 and not symbols and column.code_ratio > 0.5 and column.numeric_text_ratio < 0.5:
        return 0.0
    score = math.sqrt(column.fill) * (1.0 + 2.0 * prior) * (1.5 if symbols else 1.0)
    return score / (1.0 + 0.1 * column.depth)


def _worded(texts: Sequence[str]) -> float:
    """Share of texts holding a word (three letters or more) that names no currency."""
    sample = texts[:300]
    worded = sum(
        1
        for text in sample
        if any(currency_of(word.group(0)) is None for word in _WORD_RUN.finditer(text))
    )
    return worded / len(sample) if sample else 0.0


def _order(a: Column, b: Column) -> tuple[int, int, int]:
    """(rows with both, rows where a < b, rows where a > b)."""
    both = less = more = 0
    for row, x in a.amounts.items():
        y = b.amounts.get(row)
        if y is None:
            continue
        both += 1
        less += x < y
        more += x > y
    return both, less, more


def _partner(primary: Column, others: Sequence[Column]) -> tuple[Column, bool] | None:
    """The other price of a sale/list pair and whether ``primary`` is the lower one."""
    best: tuple[float, Column, bool] | None = None
    for other in others:
        if _price_prior(other) == 0 and other.money_ratio < 0.5:
            continue
        both, less, more = _order(primary, other)
        if both >= 3:
            if less + more == 0 or min(less, more) > 0.05 * both:
                continue  # identical, or not ordered: not a sale/list pair
            ratios = [
                primary.amounts[r] / other.amounts[r] for r in primary.amounts if r in other.amounts
            ]
            if not 0.2 <= median(ratios) <= 5.0:
                continue
            lower = less > more
        else:
            sale = (
                primary.prior("sale")
                - other.prior("sale")
                + other.prior("list")
                - primary.prior("list")
            )
            if sale == 0:
                continue
            lower = sale > 0
        weight = both + 10 * _price_prior(other)
        if best is None or weight > best[0]:
            best = (weight, other, lower)
    return None if best is None else (best[1], best[2])


def _texts(row: dict[str, Any]) -> list[str]:
    return [value for value in row.values() if isinstance(value, str) and len(value) <= 200]


def _cents(column: Column, sample: Sample, others: Sequence[Column]) -> tuple[bool, str]:
    """Whether the integer amounts of ``column`` are cents, and the evidence."""
    if not column.integral:
        return False, ""
    hundred = unit = 0
    for checked, (row, amount) in enumerate(list(column.amounts.items())[:_MAX_EVIDENCE_ROWS]):
        if checked >= _MIN_EVIDENCE_ROWS and hundred + unit == 0:
            break  # the records state no unit prices
        implied = expected_prices(_texts(sample.rows[row]))
        if any(_CENT_RATIO[0] <= amount / p <= _CENT_RATIO[1] for p in implied if p > 0):
            hundred += 1
        elif any(_UNIT_RATIO[0] <= amount / p <= _UNIT_RATIO[1] for p in implied if p > 0):
            unit += 1
    if hundred >= _MIN_EVIDENCE and hundred >= 3 * unit:
        return (
            True,
            f"cents: unit price x quantity in the same record gives value/100 on {hundred} rows",
        )
    for other in others:
        if other is column or other.integral:
            continue
        ratios = [a / other.amounts[r] for r, a in column.amounts.items() if other.amounts.get(r)]
        close = sum(1 for q in ratios if _CENT_RATIO[0] <= q <= _CENT_RATIO[1])
        if len(ratios) >= _MIN_EVIDENCE and close >= 0.8 * len(ratios):
            return True, f"cents: {other.path} holds value/100 on {close} rows"
    return False, ""


def _feed_currency(sample: Sample) -> tuple[str | None, str]:
    """The one currency named next to amounts across the sample's short texts, if consistent."""
    codes: Counter[str] = Counter()
    for row in sample.rows[:300]:
        for text in _texts(row):
            for _, code in money_in(text)[:1]:
                codes[code] += 1
    if not codes:
        return None, ""
    code, count = codes.most_common(1)[0]
    if count >= 5 and count >= 0.8 * sum(codes.values()):
        return code, f"amounts in the feed are written in {code}"
    return None, ""


def _currency_column(sample: Sample, claimed: set[str]) -> FieldSource | None:
    for column in sample.columns.values():
        if column.path in claimed or column.fill < 0.5 or column.str_ratio < 0.9:
            continue
        if column.distinct > 5 or column.mean_len > 5:
            continue
        if sum(1 for text in column.strings if currency_of(text)) >= 0.9 * len(column.strings):
            return FieldSource(
                "currency",
                (column.path,),
                kind="currency",
                confidence=0.9,
                evidence="short values that are currency codes or symbols",
            ).with_examples(column.strings)
    return None


def find_prices(sample: Sample, claimed: set[str]) -> list[FieldSource]:
    """Sources for ``price``, ``list_price`` and ``currency`` (those found)."""
    scored = [
        (score, column)
        for column in sample.columns.values()
        if column.path not in claimed and (score := _score(column)) > 0
    ]
    if not scored:
        return []
    scored.sort(key=lambda item: (-item[0], item[1].path))
    primary = scored[0][1]
    others = [column for _, column in scored[1:]]
    found: list[FieldSource] = []
    currency, currency_note = _feed_currency(sample)
    pair = _partner(primary, others)
    cents, cents_note = _cents(primary, sample, [c for c in sample.columns.values() if c.amounts])
    scale = 0.01 if cents else 1.0
    notes = [f"amounts in {primary.price_parse_ratio:.0%} of values"]
    if _price_prior(primary):
        notes.append("key names a price")
    if primary.money_ratio >= 0.5:
        notes.append("values carry a currency")
    for note in (cents_note, currency_note):
        if note:
            notes.append(note)
    confidence = min(1.0, 0.4 + 0.3 * _price_prior(primary) + 0.3 * primary.fill)
    if pair is None:
        price = FieldSource(
            "price",
            (primary.path,),
            kind="money",
            scale=scale,
            currency=currency,
            confidence=confidence,
            evidence="; ".join(notes),
        )
        found.append(price.with_examples(primary.values))
    else:
        other, primary_lower = pair
        low, high = (primary, other) if primary_lower else (other, primary)
        other_scale = scale if other.integral == primary.integral else 1.0
        low_scale, high_scale = (scale, other_scale) if primary_lower else (other_scale, scale)
        sources = (low.path,) if low.fill >= 0.95 * high.fill else (low.path, high.path)
        note = f"{low.path} is below {high.path} where both are set"
        price = FieldSource(
            "price",
            sources,
            kind="money",
            scale=low_scale,
            currency=currency,
            confidence=confidence,
            evidence="; ".join([*notes, note]),
        )
        listed = FieldSource(
            "list_price",
            (high.path,),
            kind="money",
            scale=high_scale,
            currency=currency,
            confidence=confidence * 0.9,
            evidence=note,
        )
        found.append(price.with_examples(low.values))
        found.append(listed.with_examples(high.values))
    column = _currency_column(sample, claimed)
    if column is not None:
        found.append(column)
    return [replace(source) for source in found]
