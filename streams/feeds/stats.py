"""Statistics of each source path's values over a sample of records.

:func:`sample_columns` flattens the sample and gathers, per source path, the non-empty value of
each row; :class:`Column` computes what its values look like (types, lengths, token counts,
uniqueness, letters and digits, URLs, images, HTML, codes, money and measurements) lazily,
once. The role detectors in :mod:`prodcat.streams.feeds.infer` read only these features.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any, Final

from prodcat.streams.feeds.flatten import flatten, parse_path, top_key
from prodcat.streams.feeds.keynames import name_prior
from prodcat.streams.feeds.units import is_measure, is_unit_price, money_in
from prodcat.streams.prices import parse_price

__all__ = ["PLACEHOLDERS", "Column", "Sample", "is_empty", "sample_columns"]

PLACEHOLDERS: Final = frozenset(
    {"undefined", "null", "none", "nan", "n/a", "na", "-", "--", "\u2014", "?", "nil"}
)
_MAX_COLUMNS: Final = 2048
_URL: Final = re.compile(r"^(?:https?|ftp|file)://\S+$", re.I)
_PROTOCOL_RELATIVE: Final = re.compile(r"^//[\w.-]+\.\w+/\S*$")
_REL_URL: Final = re.compile(r"^/?[\w.~%+-]+(?:/[\w.~%+,=-]*)+(?:\?\S*)?$")
# What makes a slash-separated token a URL path rather than a category ("Shoes/Boots"): a leading
# slash, a query, a file extension, a lower-case hyphenated slug or a long number in a segment.
_URL_PART: Final = re.compile(r"^/|\?|\.[a-z]{2,5}$|(?:^|/)[a-z0-9]+(?:-[a-z0-9]+)+(?:/|$)|\d{4,}")
_IMAGE_EXT: Final = re.compile(r"\.(?:jpe?g|png|gif|webp|bmp|tiff?|avif|heic|svg)(?:[?#&]|$)", re.I)
_HTML: Final = re.compile(r"<(?:[a-zA-Z][a-zA-Z0-9]*)(?:\s[^<>]*)?/?>|&(?:[a-z]+|#\d+);")
_CODE: Final = re.compile(r"^(?=.*\d)[\w.:/#+-]{2,64}$")
_NUMBER: Final = re.compile(r"^[+-]?\d+(?:[.,]\d+)?$")
_CENTS_WRITTEN: Final = re.compile(r"[.,]\d{1,2}$")
# Scripts written without spaces between words: Thai, Lao, Khmer, kana, CJK ideographs.
_UNSPACED: Final = re.compile("[\u0e00-\u0eff\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]")


def is_empty(value: Any) -> bool:
    """Whether a leaf holds nothing: None, blank or placeholder text, an empty list."""
    if value is None:
        return True
    if isinstance(value, str):
        stripped = value.strip()
        return not stripped or stripped.casefold() in PLACEHOLDERS
    if isinstance(value, list):
        return all(is_empty(item) for item in value)
    return False


def _ratio(count: float, total: int) -> float:
    return count / total if total else 0.0


class Column:
    """The non-empty values of one source path in a sample of ``n`` records."""

    def __init__(self, path: str, n: int) -> None:
        self.path = path
        self.n = n
        self.present = 0
        self.rows: dict[int, Any] = {}

    def __repr__(self) -> str:
        return f"Column({self.path!r}, fill={self.fill:.2f}, distinct={self.distinct})"

    @cached_property
    def values(self) -> list[Any]:
        return list(self.rows.values())

    @cached_property
    def fill(self) -> float:
        """Share of sampled records with a non-empty value."""
        return _ratio(len(self.rows), self.n)

    @cached_property
    def depth(self) -> int:
        return len([step for step in parse_path(self.path) if isinstance(step, str)])

    @cached_property
    def top(self) -> str:
        return top_key(self.path)

    @cached_property
    def parent(self) -> str:
        """The path of the object holding this leaf (``""`` for a top-level key)."""
        cut = max(self.path.rfind("."), -1)
        return self.path[:cut] if cut > 0 else ""

    @cached_property
    def strings(self) -> list[str]:
        return [value.strip() for value in self.values if isinstance(value, str)]

    @cached_property
    def lists(self) -> list[list[Any]]:
        return [value for value in self.values if isinstance(value, list)]

    @cached_property
    def numbers(self) -> list[float]:
        return [
            float(value)
            for value in self.values
            if isinstance(value, int | float) and not isinstance(value, bool)
        ]

    @cached_property
    def str_ratio(self) -> float:
        return _ratio(len(self.strings), len(self.rows))

    @cached_property
    def list_ratio(self) -> float:
        return _ratio(len(self.lists), len(self.rows))

    @cached_property
    def num_ratio(self) -> float:
        return _ratio(len(self.numbers), len(self.rows))

    @cached_property
    def distinct(self) -> int:
        return len({_hashable(value) for value in self.values})

    @cached_property
    def uniqueness(self) -> float:
        """Distinct values over non-empty values."""
        return _ratio(self.distinct, len(self.rows))

    @cached_property
    def counts(self) -> Counter[str]:
        return Counter(value.casefold() for value in self.strings)

    @cached_property
    def mean_len(self) -> float:
        return _ratio(sum(len(text) for text in self.strings), len(self.strings))

    @cached_property
    def mean_tokens(self) -> float:
        """Words per string value (scripts written without spaces count two characters a word)."""
        return _ratio(sum(_words(text) for text in self.strings), len(self.strings))

    @cached_property
    def letter_ratio(self) -> float:
        """Letters over non-space characters of the string values."""
        letters = chars = 0
        for text in self.strings[:300]:
            letters += sum(map(str.isalpha, text))
            chars += len(text) - text.count(" ")
        return _ratio(letters, chars)

    def _share(self, pattern: re.Pattern[str]) -> float:
        return _ratio(sum(1 for text in self.strings if pattern.search(text)), len(self.strings))

    @cached_property
    def digit_share(self) -> float:
        """Share of string values holding a digit."""
        return _ratio(
            sum(1 for text in self.strings if any(c.isdigit() for c in text)), len(self.strings)
        )

    @cached_property
    def url_ratio(self) -> float:
        """Share of values that are absolute URLs (also of URL lists)."""
        urls = sum(1 for text in self.strings if _URL.match(text) or _PROTOCOL_RELATIVE.match(text))
        urls += sum(
            1
            for items in self.lists
            if items and isinstance(items[0], str) and _URL.match(items[0].strip())
        )
        return _ratio(urls, len(self.rows))

    @cached_property
    def rel_url_ratio(self) -> float:
        """Share of string values shaped like a relative URL (``vin/some-wine-123``)."""
        found = sum(
            1
            for text in self.strings
            if _REL_URL.match(text) and _URL_PART.search(text) and not _URL.match(text)
        )
        return _ratio(found, len(self.rows))

    @cached_property
    def image_ratio(self) -> float:
        """Share of values that are URLs of images (by extension)."""
        found = sum(1 for text in self.strings if _IMAGE_EXT.search(text) and "/" in text)
        found += sum(
            1
            for items in self.lists
            if items and isinstance(items[0], str) and _IMAGE_EXT.search(items[0])
        )
        return _ratio(found, len(self.rows))

    @cached_property
    def html_ratio(self) -> float:
        return self._share(_HTML)

    @cached_property
    def code_ratio(self) -> float:
        """Share of string values that look like codes: one token holding a digit."""
        return self._share(_CODE)

    @cached_property
    def numeric_text_ratio(self) -> float:
        """Share of string values that are a bare number."""
        return self._share(_NUMBER)

    @cached_property
    def money_ratio(self) -> float:
        """Share of string values with an amount next to a currency symbol or code."""
        return _ratio(sum(1 for text in self.strings if money_in(text)), len(self.strings))

    @cached_property
    def unit_price_ratio(self) -> float:
        return _ratio(sum(1 for text in self.strings if is_unit_price(text)), len(self.strings))

    @cached_property
    def measure_ratio(self) -> float:
        """Share of string values that are quantities with a unit or a percentage."""
        return _ratio(sum(1 for text in self.strings if is_measure(text)), len(self.strings))

    @cached_property
    def price_parse_ratio(self) -> float:
        """Share of scalar values that parse as a (positive) price."""
        scalars = [value for value in self.values if not isinstance(value, list | bool)]
        return _ratio(sum(1 for value in scalars if parse_price(value) is not None), len(self.rows))

    @cached_property
    def amounts(self) -> dict[int, float]:
        """Row -> parsed amount, for rows whose value parses as a price."""
        found: dict[int, float] = {}
        for row, value in self.rows.items():
            if isinstance(value, list | bool):
                continue
            money = parse_price(value)
            if money is not None:
                found[row] = money["value"]
        return found

    @cached_property
    def integral(self) -> bool:
        """Whether every amount is a whole number written without decimals."""
        for value in self.values:
            if isinstance(value, float) or (
                isinstance(value, str) and _CENTS_WRITTEN.search(value.strip())
            ):
                return False
        amounts = self.amounts.values()
        return bool(amounts) and all(amount == int(amount) for amount in amounts)

    @cached_property
    def long_decimals(self) -> float:
        """Share of amounts with three or more decimals (ratios and scores, not prices)."""
        long = sum(1 for amount in self.amounts.values() if abs(round(amount, 2) - amount) > 1e-9)
        return _ratio(long, len(self.rows))

    def prior(self, role: str) -> float:
        return name_prior(self.path, role)


def _words(text: str) -> float:
    words: float = len(text.split())
    if not text.isascii():
        words += len(_UNSPACED.findall(text)) / 2
    return words


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(item) for item in value)
    if isinstance(value, str):
        return value.strip()
    return value


class Sample:
    """A flattened sample: its rows (source path -> leaf) and its columns."""

    def __init__(
        self,
        rows: list[dict[str, Any]],
        columns: dict[str, Column],
        records: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        self.rows = rows
        self.columns = columns
        self.records = records
        self.n = len(rows)

    def column(self, path: str) -> Column | None:
        return self.columns.get(path)

    @cached_property
    def whole_rows(self) -> frozenset[int]:
        """The rows that are whole records, not fragments: those with at least half as many
        filled fields as the fullest tenth of the rows. An export that writes a product's extra
        variants or images as rows of their own, blank but for a few fields, has fragments (often
        more of them than products); most feeds have none."""
        filled = Counter[int]()
        for column in self.columns.values():
            filled.update(column.rows.keys())
        if not filled:
            return frozenset()
        counts = sorted(filled[row] for row in range(self.n))
        floor = counts[len(counts) * 9 // 10] / 2
        return frozenset(row for row in range(self.n) if filled[row] >= floor)

    def restricted(self, paths: Sequence[str]) -> Sample:
        """The same rows with only the columns at ``paths``."""
        return Sample(
            self.rows, {p: c for p, c in self.columns.items() if p in set(paths)}, self.records
        )


def sample_columns(records: Sequence[Mapping[str, Any]]) -> Sample:
    """Flatten ``records`` and gather the non-empty values of each source path."""
    rows = [flatten(record) for record in records]
    columns: dict[str, Column] = {}
    n = len(rows)
    for index, row in enumerate(rows):
        for path, value in row.items():
            column = columns.get(path)
            if column is None:
                if len(columns) >= _MAX_COLUMNS:
                    continue
                column = columns[path] = Column(path, n)
            column.present += 1
            if not is_empty(value):
                column.rows[index] = value
    return Sample(rows, columns, records)
