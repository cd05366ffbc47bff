"""Detectors for the text roles of a feed: title, source id, URLs, images, brand, description,
gender, sizes, retailer and attributes. Each reads column features (:mod:`...feeds.stats`) and
returns a :class:`FieldSource` or None; key names only tilt the scores.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

from prodcat.streams.feeds.flatten import Op, parse_path, render_path
from prodcat.streams.feeds.keynames import path_words
from prodcat.streams.feeds.profile import FieldSource
from prodcat.streams.feeds.stats import Column, Sample
from prodcat.streams.gender import gender_words

__all__ = [
    "find_attributes",
    "find_brand",
    "find_description",
    "find_gender",
    "find_id",
    "find_images",
    "find_product_url",
    "find_retailer",
    "find_sizes",
    "find_title",
    "title_texts",
]

MAX_ATTRIBUTES: Final = 32
MAX_IMAGE_SOURCES: Final = 20
_OTHER_ROLES: Final = (
    "brand",
    "category",
    "id",
    "url",
    "image",
    "price",
    "description",
    "retailer",
)
_TITLE_FILL_POWER: Final = 8
_OPTION_NAME_KEYS: Final = frozenset({"name", "type", "label", "optionname", "attribute", "key"})


def _title_score(column: Column) -> float:
    if column.str_ratio < 0.8 or column.fill < 0.05 or column.letter_ratio < 0.4:
        return 0.0
    if column.url_ratio + column.rel_url_ratio > 0.2 or column.image_ratio > 0.2:
        return 0.0
    if column.code_ratio > 0.5 or column.numeric_text_ratio > 0.5 or column.mean_len > 500:
        return 0.0
    tokens = max(column.mean_tokens, 0.5)
    shape = math.exp(-(math.log(tokens / 6.0) ** 2) / (2 * 1.2**2))
    prior = column.prior("title")
    other = any(column.prior(role) >= 1.0 for role in _OTHER_ROLES)
    factor = (0.8 if other else 1.0 + 0.5 * prior) * (0.3 if column.html_ratio > 0.3 else 1.0)
    return column.fill * column.uniqueness * shape * factor


def _agree(a: Column, b: Column) -> float:
    """Share of rows with both values where ``b`` repeats most of ``a``'s words."""
    both = agree = 0
    for row, value in a.rows.items():
        other = b.rows.get(row)
        if not isinstance(value, str) or not isinstance(other, str):
            continue
        both += 1
        words, others = set(value.casefold().split()), set(other.casefold().split())
        agree += len(words & others) >= 0.5 * max(1, min(len(words), len(others)))
    return agree / both if both else 0.0


def find_title(sample: Sample, claimed: set[str]) -> FieldSource | None:
    """A mostly unique, short-to-medium, letter-rich text; fallbacks that repeat it."""
    candidates = [
        (score, column)
        for column in sample.columns.values()
        if column.path not in claimed and (score := _title_score(column)) > 0
    ]
    if not candidates:
        return None
    # Every product has a title: a field missing from some records loses steeply to one that is
    # always there (an optional qualifier such as a subtitle is often as distinct and as long).
    # Counted on whole records against the fullest candidate, so records blank in every field,
    # and fragment rows (a variant's or an image's row under its product), cost nothing.
    whole = sample.whole_rows

    def whole_fill(column: Column) -> float:
        return sum(row in whole for row in column.rows) / len(whole) if whole else column.fill

    fullest = max(whole_fill(column) for _, column in candidates)
    scored = sorted(
        (
            (
                score
                / column.fill
                * (fill := whole_fill(column))
                * (fill / fullest) ** _TITLE_FILL_POWER,
                column,
            )
            for score, column in candidates
        ),
        key=lambda item: (-round(item[0], 3), item[1].mean_len, item[1].path),
    )
    best_score, best = scored[0]
    fallbacks = [
        c.path
        for s, c in scored[1:4]
        if s >= 0.3 * best_score
        and c.mean_tokens <= 2 * max(best.mean_tokens, 1.0)
        and _agree(best, c) >= 0.5
    ]
    why = (
        f"text in {best.fill:.0%} of rows, {best.uniqueness:.0%} distinct, "
        f"{best.mean_tokens:.1f} words on average"
    )
    if best.prior("title"):
        why += "; key names a title"
    if fallbacks:
        why += f"; falls back to {', '.join(fallbacks)}"
    source = FieldSource(
        "title", (best.path, *fallbacks), confidence=min(1.0, 0.3 + 0.7 * best_score), evidence=why
    )
    return source.with_examples(best.strings)


def title_texts(sample: Sample, title: FieldSource | None) -> dict[int, str]:
    """Row -> casefolded title text, for the detectors that compare values with the title."""
    out: dict[int, str] = {}
    if title is None:
        return out
    for path in reversed(title.sources):
        column = sample.column(path)
        if column is not None:
            out.update((row, str(value).casefold()) for row, value in column.rows.items())
    return out


def find_id(sample: Sample, claimed: set[str], near: str | None = None) -> FieldSource | None:
    """A unique, code-like value (no spaces), preferably named like an id, shallow, and in the
    object ``near`` (the path of the title's object)."""
    best: tuple[float, Column] | None = None
    for column in sample.columns.values():
        if (
            column.path in claimed
            or column.fill < 0.5
            or column.uniqueness < 0.9
            or column.list_ratio
        ):
            continue
        if any(isinstance(v, float) and not v.is_integer() for v in column.values) or any(
            isinstance(v, bool) for v in column.values
        ):
            continue
        if column.strings and (
            sum(1 for text in column.strings if " " in text) > 0.05 * len(column.strings)
            or column.mean_len > 64
            or column.url_ratio + column.rel_url_ratio > 0.1
        ):
            continue
        prior = column.prior("id")
        if prior == 0 and column.code_ratio < 0.8 and column.num_ratio < 0.8:
            continue
        score = column.fill * column.uniqueness * (1.0 + prior) / (1.0 + 0.2 * (column.depth - 1))
        if near is not None and column.parent == near:
            score *= 1.5
        if best is None or score > best[0]:
            best = (score, column)
    if best is None:
        return None
    score, column = best
    source = FieldSource(
        "source_id",
        (column.path,),
        confidence=min(1.0, score / 2),
        evidence=f"{column.uniqueness:.0%} distinct, code-like"
        + ("; key names an id" if column.prior("id") else ""),
    )
    return source.with_examples(column.values)


def find_images(sample: Sample, claimed: set[str]) -> FieldSource | None:
    """Every field holding image URLs (by extension, or URLs under an image-named key)."""
    found = [
        column
        for column in sample.columns.values()
        if column.path not in claimed
        and (column.image_ratio >= 0.5 or (column.prior("image") and column.url_ratio >= 0.5))
    ]
    if not found:
        return None
    order = {path: index for index, path in enumerate(sample.columns)}
    found.sort(key=lambda c: (-c.prior("image"), order[c.path]))
    found = found[:MAX_IMAGE_SOURCES]
    source = FieldSource(
        "image_urls",
        tuple(column.path for column in found),
        kind="urls",
        confidence=0.9,
        evidence="URLs of images (by extension or key name)",
    )
    return source.with_examples(found[0].values)


def find_product_url(sample: Sample, claimed: set[str]) -> FieldSource | None:
    """A mostly unique URL (absolute preferred, relative allowed) that is not an image."""
    best: tuple[float, Column] | None = None
    for column in sample.columns.values():
        if column.path in claimed or column.image_ratio >= 0.3 or column.prior("image"):
            continue
        absolute = column.url_ratio >= 0.8
        if not absolute and column.rel_url_ratio < 0.8:
            continue
        score = (
            column.fill
            * column.uniqueness
            * (1.0 if absolute else 0.7)
            * (1.0 + column.prior("url"))
        )
        if best is None or score > best[0]:
            best = (score, column)
    if best is None or best[0] < 0.2:
        return None
    score, column = best
    kind = "absolute" if column.url_ratio >= 0.8 else "relative"
    source = FieldSource(
        "product_url",
        (column.path,),
        confidence=min(1.0, score / 2),
        evidence=f"{kind} URLs, {column.uniqueness:.0%} distinct, not images",
    )
    return source.with_examples(column.values)


def _short_text(column: Column, max_tokens: float = 5.0) -> bool:
    return (
        column.str_ratio >= 0.9
        and column.letter_ratio >= 0.5
        and column.mean_tokens <= max_tokens
        and column.mean_len <= 60
        and column.url_ratio < 0.1
    )


def _lists_options(column: Column) -> bool:
    """Whether values list several short options ("Blue, Green, Red", "Yes, No") in at least
    two rows and 5% of them: the field holds options, not one maker's name each."""
    lists = 0
    for text in column.strings:
        items = text.split(",")
        lists += len(items) >= 2 and all(0 < len(item.split()) <= 2 for item in items)
    return lists >= max(2, 0.05 * len(column.strings))


def find_brand(sample: Sample, claimed: set[str], titles: Mapping[int, str]) -> FieldSource | None:
    """Short, repeating names; named like a brand or repeated inside the titles."""
    best: tuple[float, Column, float] | None = None
    for column in sample.columns.values():
        if column.path in claimed:
            continue
        prior = column.prior("brand")
        if not column.rows:
            if prior >= 1.0 and column.present >= 0.5 * column.n and best is None:
                best = (0.01, column, 0.0)
            continue
        if not _short_text(column) or (column.distinct < 2 and prior == 0):
            continue
        hits = sum(
            1
            for row, v in column.rows.items()
            if isinstance(v, str) and v.strip().casefold() in titles.get(row, "")
        )
        contain = hits / len(column.rows)
        if prior == 0 and (contain < 0.4 or column.uniqueness > 0.6 or column.distinct < 3):
            continue
        if prior == 0 and _lists_options(column):
            continue
        score = (0.2 + column.fill) * (1.0 + 2.0 * prior) * (0.5 + contain)
        if best is None or score > best[0]:
            best = (score, column, contain)
    if best is None:
        return None
    score, column, contain = best
    notes = [f"short names in {column.fill:.0%} of rows, {column.distinct} distinct"]
    if column.prior("brand"):
        notes.append("key names a brand")
    if contain:
        notes.append(f"{contain:.0%} appear in the title")
    source = FieldSource(
        "brand", (column.path,), confidence=min(1.0, 0.2 + score / 3), evidence="; ".join(notes)
    )
    return source.with_examples(column.strings)


def find_retailer(sample: Sample, claimed: set[str]) -> FieldSource | None:
    """A low-cardinality name column named like a shop, store, market or seller."""
    for column in sorted(sample.columns.values(), key=lambda c: -c.fill):
        if column.path in claimed or column.prior("retailer") < 1.0 or column.fill < 0.5:
            continue
        if _short_text(column, 4.0) and column.distinct <= 200:
            source = FieldSource(
                "retailer",
                (column.path,),
                confidence=0.7,
                evidence=f"shop names named like a retailer, {column.distinct} distinct",
            )
            return source.with_examples(column.strings)
    return None


def find_description(sample: Sample, claimed: set[str]) -> FieldSource | None:
    """Long text or HTML, preferably named like a description."""
    best: tuple[float, Column] | None = None
    for column in sample.columns.values():
        if (
            column.path in claimed
            or column.str_ratio < 0.8
            or column.letter_ratio < 0.5
            or column.url_ratio > 0.1
        ):
            continue
        prior = column.prior("description")
        long = column.mean_tokens >= 12 or column.html_ratio >= 0.3
        if not (prior or long):
            continue
        score = column.fill * (1.0 + prior) * min(1.0, 0.3 + column.mean_tokens / 20)
        if best is None or score > best[0]:
            best = (score, column)
    if best is None or best[0] < 0.05:
        return None
    score, column = best
    source = FieldSource(
        "description",
        (column.path,),
        confidence=min(1.0, score),
        evidence=f"text of {column.mean_tokens:.0f} words on average"
        + ("; key names a description" if column.prior("description") else ""),
    )
    return source.with_examples(column.strings)


def find_gender(sample: Sample, claimed: set[str]) -> FieldSource | None:
    """Fields whose few distinct values name genders or age groups (all are read together)."""
    found = []
    for column in sample.columns.values():
        if (
            column.path in claimed
            or column.str_ratio < 0.9
            or column.distinct > 30
            or column.fill < 0.1
        ):
            continue
        if column.mean_len > 24 or column.letter_ratio < 0.7:
            continue
        hits = sum(1 for text in column.strings if gender_words(text))
        if hits >= 0.7 * len(column.strings):
            found.append(column)
    if not found:
        return None
    source = FieldSource(
        "gender",
        tuple(c.path for c in found),
        kind="gender",
        confidence=0.8,
        evidence="values name genders or age groups",
    )
    return source.with_examples(found[0].strings)


def find_sizes(sample: Sample, claimed: set[str]) -> FieldSource | None:
    """A size field (named like one, short values or lists), or option objects named "size"."""
    return _size_options(sample) or _size_field(sample, claimed)


def _size_field(sample: Sample, claimed: set[str]) -> FieldSource | None:
    for column in sample.columns.values():
        if column.path in claimed or column.prior("sizes") < 1.0 or column.fill < 0.1:
            continue
        short = column.str_ratio >= 0.9 and column.mean_len <= 64 and column.mean_tokens <= 3
        if column.list_ratio >= 0.5 or short:
            source = FieldSource(
                "sizes",
                (column.path,),
                kind="sizes",
                confidence=0.7,
                evidence="short values under a key naming sizes",
            )
            return source.with_examples(column.values)
    return None


def _size_options(sample: Sample) -> FieldSource | None:
    for column in sample.columns.values():
        steps = parse_path(column.path)
        if len(steps) < 3 or steps[-2] is not Op.ITEMS or not isinstance(steps[-1], str):
            continue
        last, _ = path_words(column.path)
        if "".join(last) not in _OPTION_NAME_KEYS or column.fill < 0.1:
            continue
        if sum(1 for text in column.strings if "size" in text.casefold()) >= 0.5 * len(
            column.strings
        ):
            holder = render_path(steps[:-3]) if len(steps) > 3 else ""
            return FieldSource(
                "sizes",
                (holder or ".",),
                kind="options",
                confidence=0.6,
                evidence=f"option objects named like sizes under {render_path(steps[:-2])}",
            )
    return None


def find_attributes(
    sample: Sample, claimed: set[str], near: str | None = None
) -> FieldSource | None:
    """The other short scalar fields present in most records, kept as attributes."""
    found = [
        column
        for column in sample.columns.values()
        if column.path not in claimed
        and column.fill >= 0.2
        and not column.lists
        and column.mean_len <= 100
        and column.html_ratio < 0.1
        and column.url_ratio + column.rel_url_ratio < 0.5
    ]
    found.sort(key=lambda c: (c.parent != near, -c.fill, c.depth))
    found = found[:MAX_ATTRIBUTES]
    if not found:
        return None
    order = {path: index for index, path in enumerate(sample.columns)}
    found.sort(key=lambda c: order[c.path])
    return FieldSource(
        "attributes",
        tuple(c.path for c in found),
        kind="attributes",
        confidence=0.5,
        evidence="other short fields",
    )
