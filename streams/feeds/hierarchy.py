"""Finding a feed's category path from what its values look like.

Four shapes are recognised, each scored, and the best one wins:

* one string field holding a delimited path: the delimiter is the one the feed uses
  consistently, with the spacing it uses (:mod:`prodcat.streams.feeds.paths`);
* a list of levels (``["vin", "rött vin", ...]``), or a list whose first item is a path;
* several fields, one per level (flat columns or keys of nested objects): levels are found and
  ordered by how their values nest (each child value belongs to one parent value, and a parent
  has fewer distinct values), not by their names;
* a numeric Google product category id, looked up in the Google taxonomy.

A path is a hierarchy when it has few roots relative to its rows, when a label keeps its depth,
and when it does not repeat the title's words (a keyword list is not a category). Key names are
one weak signal: a category-like word raises a candidate, a word for geography, brand, colour and
the like lowers it (country -> region nests, but is not a product category).
"""

from __future__ import annotations

import html
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from statistics import median
from typing import Final

from prodcat.streams.feeds.flatten import Op, getter, parse_path
from prodcat.streams.feeds.paths import clean_levels, dominant_split, split_levels
from prodcat.streams.feeds.profile import FieldSource
from prodcat.streams.feeds.stats import Column, Sample

__all__ = ["find_category"]

# delimiter -> how much a match on it is worth (commas and semicolons also separate lists)
_DELIMITERS: Final = {
    ">>": 1.0,
    ">": 1.0,
    "\u203a": 1.0,
    "»": 1.0,
    "→": 1.0,
    "|": 0.9,
    "/": 0.9,
    "\\": 0.7,
    ";": 0.6,
    ",": 0.5,
}
# Other delimiters are found in the values: a run of one to three marks in most of them
# ("::", "->", " - ", "~"), never the marks that sit inside names and prices.
_MARKS: Final = re.compile(r"[^\w\s]{1,3}")
_NAME_MARKS: Final = frozenset(".'\"()[]{}%+&*!?#@$=,`^_\u2019\u00b4")
_FOUND_SHARE: Final = 0.5
_FOUND_STRENGTH: Final = 0.8
_MIN_SCORE: Final = 0.2
_WORD: Final = re.compile(r"\w+")
_TAG: Final = re.compile(r"<[a-zA-Z][a-zA-Z0-9]*(?:\s[^<>]*)?/?>")
_MIN_PURITY: Final = 0.88
_CONSTANT_ROOT: Final = 0.85
_MAX_CHAIN: Final = 6
_MAX_CHAIN_COLUMNS: Final = 40
_MAX_CHAINS: Final = 5000
_SINGLE_LEVEL: Final = 0.5  # one field without a delimiter: a category, but a weak one
_CONSISTENT_DELIMITER: Final = 0.9  # a delimiter in nearly every value is the feed's own
_GOOGLE_SHARE: Final = 0.8
_OWN_OVER_GOOGLE: Final = 0.5
_LIFT_MIN_ROWS: Final = 10
_FINALISTS: Final = 6


@dataclass(frozen=True)
class _Candidate:
    source: FieldSource
    score: float
    google: bool = False  # a Google product category (id or path), not the feed's own
    # row -> the path it gives that row, joined (made only for the few finalists)
    labels: Callable[[], dict[int, str]] | None = None


def _joined(rows: Sequence[int], paths: Sequence[Sequence[str]]) -> Callable[[], dict[int, str]]:
    return lambda: {row: " > ".join(path) for row, path in zip(rows, paths, strict=False) if path}


def _title_lift(labels: Mapping[int, str], titles: Mapping[int, str]) -> float | None:
    """How much better than the commonest path a row's title words predict its path: 0 when
    they add nothing (stock states, tax classes, a platform's product kinds), 1 when they decide
    it. Leave-one-out votes of the title's words; words in more than a fifth of the rows do not
    vote. None when fewer than ten rows have both a title and a path."""
    pairs = [
        (set(_WORD.findall(titles[row])), label) for row, label in labels.items() if row in titles
    ]
    if len(pairs) < _LIFT_MIN_ROWS:
        return None
    frequent = len(pairs) / 5
    by_word: dict[str, Counter[str]] = defaultdict(Counter)
    for words, label in pairs:
        for word in words:
            by_word[word][label] += 1
    overall = Counter(label for _, label in pairs)
    base = max(overall.values()) / len(pairs)
    if base >= 1.0:
        return 0.0
    right = 0
    for words, label in pairs:
        votes: dict[str, float] = defaultdict(float)
        for word in words:
            counts = by_word[word]
            others = counts.total() - 1
            if 0 < others <= frequent:
                for other, count in counts.items():
                    left = count - (other == label)
                    if left:
                        votes[other] += left / others
        if votes:
            guess = max(votes.items(), key=lambda item: (item[1], overall[item[0]]))[0]
        else:
            guess = overall.most_common(1)[0][0]
        right += guess == label
    return max(0.0, (right / len(pairs) - base) / (1.0 - base))


def _google_paths(taxonomy: Mapping[int, list[str]] | None) -> frozenset[tuple[str, ...]]:
    key = id(taxonomy)
    cached = _GOOGLE_PATHS.get(key)
    if cached is None or cached[0] is not taxonomy:
        paths = frozenset(
            tuple(level.casefold() for level in path) for path in (taxonomy or {}).values()
        )
        _GOOGLE_PATHS.clear()
        _GOOGLE_PATHS[key] = cached = (taxonomy, paths)
    return cached[1]


_GOOGLE_PATHS: dict[int, tuple[Mapping[int, list[str]] | None, frozenset[tuple[str, ...]]]] = {}


def _is_google(
    column: Column, paths: Sequence[list[str]], known: frozenset[tuple[str, ...]]
) -> bool:
    """Whether a path field holds Google product categories: its paths are the taxonomy's (or,
    without a taxonomy, the field is named after it)."""
    found = [path for path in paths if path]
    if known and found:
        hits = sum(1 for path in found if tuple(level.casefold() for level in path) in known)
        if hits >= _GOOGLE_SHARE * len(found):
            return True
    return "google" in column.path.casefold()


def _name_factor(columns: Sequence[Column]) -> float:
    best = max(column.prior("category") for column in columns)
    if best > 0:
        return 1.0 + 0.5 * best
    negative = sum(1 for column in columns if column.prior("not_category") > 0)
    if negative * 2 >= len(columns):
        return 0.0
    return 0.3 if negative else 1.0


def _depth_factor(depth: float) -> float:
    return 0.5 + 0.5 * min(depth, 4.0) / 4.0


def _path_quality(
    paths: Sequence[list[str]], titles: Mapping[int, str], rows: Sequence[int]
) -> tuple[float, float, str]:
    """(quality 0..1, mean depth, why) of candidate paths."""
    found = [path for path in paths if path]
    if len(found) < 2:
        return 0.0, 0.0, "too few values"
    roots = Counter(path[0].casefold() for path in found)
    root_ratio = len(roots) / len(found)
    depth = sum(len(path) for path in found) / len(found)
    if len(found) >= 20 and root_ratio > 0.3:
        return 0.0, depth, f"{len(roots)} distinct roots in {len(found)} values"
    distinct = len({tuple(path) for path in found})
    if distinct < min(3, len(found)):
        return 0.0, depth, f"only {distinct} distinct paths"
    by_label: dict[str, Counter[int]] = defaultdict(Counter)
    for path in found:
        for level, label in enumerate(path):
            by_label[label.casefold()][level] += 1
    total = sum(sum(c.values()) for c in by_label.values())
    consistent = sum(max(c.values()) for c in by_label.values()) / total
    overlap = _title_overlap(paths, titles, rows)
    if overlap > 0.6:
        return 0.0, depth, f"{overlap:.0%} of its items repeat words of the title"
    quality = (1.0 - root_ratio) ** 2 * consistent * (1.0 - overlap / 2)
    why = f"{len(roots)} roots, mean depth {depth:.1f}, labels keep their depth {consistent:.0%}"
    return quality, depth, why


def _title_overlap(
    paths: Sequence[list[str]], titles: Mapping[int, str], rows: Sequence[int]
) -> float:
    """Share of levels whose words all appear in the row's title (keyword lists do)."""
    hits = items = 0
    for row, path in zip(rows, paths, strict=False):
        title = titles.get(row)
        if not title or not path:
            continue
        words = set(_WORD.findall(title))
        for level in path:
            items += 1
            hits += all(word in words for word in _WORD.findall(level.casefold()))
    return hits / items if items else 0.0


def _first_text(items: list[object]) -> str:
    return next((item.strip() for item in items if isinstance(item, str)), "")


def _unescaped(text: str) -> str:
    """``A &gt; B`` as ``A > B`` (XML or HTML read without decoding; extraction does the same)."""
    return html.unescape(text) if "&" in text else text


def _found_delimiters(values: Sequence[str]) -> dict[str, float]:
    """Runs of marks in at least half of the values that are not known delimiters."""
    counts: Counter[str] = Counter()
    for text in values[:500]:
        counts.update({run for run in _MARKS.findall(text) if not set(run) & _NAME_MARKS})
    enough = _FOUND_SHARE * min(len(values), 500)
    return {
        run: _FOUND_STRENGTH for run, n in counts.items() if n >= enough and run not in _DELIMITERS
    }


def _inside_longer(delimiter: str, having: Sequence[str], delimiters: Mapping[str, float]) -> bool:
    """Whether every value holding ``delimiter`` holds it as part of a longer one (``>`` in
    ``->`` or ``>>``, ``:`` in ``::``)."""
    return any(
        len(other) > len(delimiter)
        and delimiter in other
        and all(
            text.count(other) * other.count(delimiter) >= text.count(delimiter) for text in having
        )
        for other in delimiters
    )


def _delimited(
    column: Column,
    titles: Mapping[int, str],
    known: frozenset[tuple[str, ...]] = frozenset(),
) -> list[_Candidate]:
    found: list[_Candidate] = []
    pairs = [
        (row, _unescaped(value.strip() if isinstance(value, str) else _first_text(value)))
        for row, value in column.rows.items()
        if isinstance(value, str | list)
    ]
    rows = [row for row, _ in pairs]
    values = [text for _, text in pairs]
    if not values:
        return found
    delimiters = {**_DELIMITERS, **_found_delimiters(values)}
    for delimiter, strength in delimiters.items():
        having = [text for text in values if delimiter in text]
        needed = 0.3 if strength > 0.6 else 0.8  # commas also separate words inside names
        if len(having) < needed * len(values) or _inside_longer(delimiter, having, delimiters):
            continue
        if strength >= 0.9 and len(having) >= _CONSISTENT_DELIMITER * len(values):
            strength = 1.0  # "|" or "/" in nearly every value: the feed's own delimiter
        split = dominant_split(having, delimiter)
        paths = [clean_levels(split_levels(text, delimiter, split)) for text in values]
        quality, depth, why = _path_quality(paths, titles, rows)
        if depth < 1.3:
            continue
        score = column.fill * quality * _depth_factor(depth) * strength * _name_factor([column])
        kind_note = "a list whose first item is" if column.str_ratio < 0.8 else "text"
        source = FieldSource(
            "category",
            (column.path,),
            kind="delimited",
            delimiter=delimiter,
            split=split,
            confidence=min(1.0, score),
            evidence=(
                f"{kind_note} split on {delimiter!r} ({split}) in "
                f"{len(having) / len(values):.0%} of values; {why}"
            ),
        ).with_examples(values)
        found.append(
            _Candidate(source, score, _is_google(column, paths, known), _joined(rows, paths))
        )
    return found


def _listed(
    column: Column, titles: Mapping[int, str], known: frozenset[tuple[str, ...]] = frozenset()
) -> list[_Candidate]:
    if column.list_ratio < 0.8:
        return []
    firsts = [str(items[0]) for items in column.lists if items]
    if firsts and sum(any(d in text for d in (">>", ">", "|", "/")) for text in firsts) > 0.5 * len(
        firsts
    ):
        return _delimited(column, titles, known)
    paths = [clean_levels(items) for items in column.lists]
    rows = [row for row, value in column.rows.items() if isinstance(value, list)]
    quality, depth, why = _path_quality(paths, titles, rows)
    score = column.fill * quality * _depth_factor(depth) * _name_factor([column])
    source = FieldSource(
        "category",
        (column.path,),
        kind="list",
        confidence=min(1.0, score),
        evidence=f"a list of levels; {why}",
    ).with_examples(" > ".join(path) for path in paths)
    return [_Candidate(source, score, _is_google(column, paths, known), _joined(rows, paths))]


def _object_list(column: Column, sample: Sample, titles: Mapping[int, str]) -> list[_Candidate]:
    """Levels as the values under every element of a list of objects (``[{"name": "A"}, ...]``)."""
    if Op.ITEMS not in parse_path(column.path) or not sample.records:
        return []
    if column.str_ratio < 0.9 or column.letter_ratio < 0.5 or column.uniqueness > 0.6:
        return []
    if sum(1 for text in column.strings if text[:1] == "/" or "://" in text) > 0.5 * len(
        column.strings
    ):
        return []  # the links of breadcrumb objects, not their names
    get = getter(column.path, every=True)
    rows = list(column.rows)
    paths = [clean_levels(get(sample.records[row])) for row in rows]
    quality, depth, why = _path_quality(paths, titles, rows)
    if depth < 1.5:
        return []
    score = column.fill * quality * _depth_factor(depth) * _name_factor([column])
    source = FieldSource(
        "category",
        (column.path,),
        kind="list",
        confidence=min(1.0, score),
        evidence=f"the values under every element of a list of objects; {why}",
    ).with_examples(" > ".join(path) for path in paths)
    return [_Candidate(source, score, labels=_joined(rows, paths))]


def _path_share(column: Column) -> float:
    """Share of values holding a path delimiter (such a field is one path, not one level)."""
    marks = (">", "/", "|", "\u203a", "»", "→")
    having = sum(1 for text in column.strings if any(mark in text for mark in marks))
    return having / len(column.strings) if column.strings else 0.0


def _chain_candidates(sample: Sample, claimed: set[str]) -> list[Column]:
    out = []
    for column in sample.columns.values():
        if (
            column.path not in claimed
            and column.fill >= 0.2
            and column.str_ratio >= 0.9
            and (column.distinct >= 2 or column.prior("category") > 0)
            and column.uniqueness <= 0.6
            and column.letter_ratio >= 0.5
            and column.mean_tokens <= 8
            and column.url_ratio < 0.1
            and column.code_ratio < 0.5
            and _path_share(column) < 0.5
            and column.measure_ratio < 0.3
            and column.digit_share < 0.5
        ):
            out.append(column)
    out.sort(key=lambda c: (-c.fill, c.path))
    return out[:_MAX_CHAIN_COLUMNS]


def _purity(child: Column, parent: Column) -> tuple[float, int, float]:
    """(how well the child's value determines the parent's, rows with both, identical share).

    Only child values seen at least twice count (a value seen once has one parent trivially), and
    the share of rows where a child value has its usual parent is measured against what always
    guessing the commonest parent would give: 0 when the child adds nothing, 1 when it
    determines the parent. Fewer than half the rows on repeated child values gives 0.
    """
    pairs: dict[str, Counter[str]] = defaultdict(Counter)
    rows = same = 0
    for row, value in child.rows.items():
        other = parent.rows.get(row)
        if other is None or not isinstance(value, str) or not isinstance(other, str):
            continue
        a, b = value.strip().casefold(), other.strip().casefold()
        pairs[a][b] += 1
        rows += 1
        same += a == b
    repeated = [counts for counts in pairs.values() if sum(counts.values()) >= 2]
    support = sum(sum(counts.values()) for counts in repeated)
    if not rows or support < 0.5 * rows:
        return 0.0, rows, same / rows if rows else 0.0
    purity = sum(max(counts.values()) for counts in repeated) / support
    overall: Counter[str] = Counter()
    for counts in repeated:
        overall.update(counts)
    base = max(overall.values()) / support
    lift = (purity - base) / (1.0 - base) if base < 1.0 else 0.0
    return lift, rows, same / rows


def _colocated(columns: Sequence[Column]) -> bool:
    keys = [column.path.split(".") for column in columns]
    if len({len(parts) for parts in keys}) != 1:
        return False
    differing = {i for i in range(len(keys[0])) if len({parts[i] for parts in keys}) > 1}
    return len(differing) <= 1


def _chains(sample: Sample, claimed: set[str]) -> list[_Candidate]:
    columns = _chain_candidates(sample, claimed)
    parents: dict[str, list[tuple[Column, float]]] = defaultdict(list)
    for child in columns:
        for parent in columns:
            if parent is child or parent.distinct >= child.distinct:
                continue
            if parent.distinct == 1:
                # A root that is constant in a small or sorted sample: only named levels qualify.
                if (
                    parent.prior("category") > 0
                    and child.prior("category") > 0
                    and child.distinct >= 2
                ):
                    parents[child.path].append((parent, _CONSTANT_ROOT))
                continue
            purity, rows, same = _purity(child, parent)
            if (
                rows >= 0.8 * min(len(child.rows), len(parent.rows))
                and purity >= _MIN_PURITY
                and same < 0.9
            ):
                parents[child.path].append((parent, purity))
    found: list[_Candidate] = []

    def extend(chain: list[Column], purity: float) -> None:
        found.append(_score_chain(list(reversed(chain)), purity))
        if len(chain) >= _MAX_CHAIN or len(found) >= _MAX_CHAINS:
            return
        for parent, edge in parents.get(chain[-1].path, ()):
            extend([*chain, parent], min(purity, edge))

    for column in columns:
        extend([column], 1.0)
    return [candidate for candidate in found if candidate.score > 0]


def _score_chain(levels: list[Column], purity: float) -> _Candidate:
    name = _name_factor(levels)
    if len(levels) == 1:
        name = _SINGLE_LEVEL * name if levels[0].prior("category") > 0 else 0.0
    coverage = max(column.fill for column in levels)
    penalty = 1.0 if len(levels) == 1 or _colocated(levels) else 0.5
    digits = median(column.digit_share for column in levels)
    tokens = median(column.mean_tokens for column in levels)
    if any(column.prior("category") > 0 for column in levels):
        # when the feed names some levels as categories, an unnamed level is suspect
        penalty *= 0.5 ** sum(1 for column in levels if column.prior("category") <= 0)
    for upper, lower in pairwise(levels):
        if lower.digit_share > 0.5 and digits < 0.2:
            penalty *= 0.5
        if lower.mean_tokens > 2.5 * max(tokens, 1.0):
            penalty *= 0.5
        if lower.fill < 0.5 * upper.fill:  # a much sparser level: rather an optional field
            penalty *= lower.fill / upper.fill
        if upper.fill < 0.8 * lower.fill:  # a parent missing where its child is set is none
            penalty *= (upper.fill / lower.fill) ** 2
    depth = sum(len(c.rows) for c in levels) / max(1, max(len(c.rows) for c in levels))
    score = coverage * purity**0.5 * _depth_factor(depth) * name * penalty
    paths = tuple(column.path for column in levels)
    kind_note = (
        "one level per field, ordered by how values nest" if len(levels) > 1 else "one field"
    )
    counts = " < ".join(str(column.distinct) for column in levels)
    source = FieldSource(
        "category",
        paths,
        kind="columns",
        confidence=min(1.0, score),
        evidence=f"{kind_note} (distinct values {counts}; each child value under one parent in {purity:.0%})",
        examples=tuple(
            " > ".join(str(column.rows.get(row, "")).strip() for column in levels)
            for row in list(levels[-1].rows)[:3]
        ),
    )

    def labels() -> dict[int, str]:
        rows = sorted(set().union(*(column.rows for column in levels)))
        return {
            row: " > ".join(str(column.rows.get(row, "")).strip() for column in levels)
            for row in rows
        }

    return _Candidate(source, score, labels=labels)


def _google(column: Column, taxonomy: Mapping[int, list[str]]) -> list[_Candidate]:
    ids: list[int] = []
    for value in column.values:
        text = str(value).strip() if not isinstance(value, bool | list) else ""
        if text.isdigit():
            ids.append(int(text))
    if len(ids) < 0.9 * len(column.rows) or not ids:
        return []
    known = [taxonomy[i] for i in ids if i in taxonomy]
    share = len(known) / len(ids)
    prior = max(column.prior("category"), 0.5 if "google" in column.path.lower() else 0.0)
    if share < 0.9 or (prior <= 0 and (share < 0.98 or min(ids) < 100 or len(set(ids)) < 3)):
        return []
    depth = sum(len(path) for path in known) / len(known)
    score = column.fill * share * _depth_factor(depth) * (1.0 + 0.5 * prior)
    source = FieldSource(
        "category",
        (column.path,),
        kind="google_id",
        confidence=min(1.0, score),
        evidence=f"{share:.0%} of values are Google product category ids",
        examples=tuple(" > ".join(path) for path in known[:3]),
    )
    rows = [row for row, value in column.rows.items() if str(value).strip().isdigit()]
    return [
        _Candidate(
            source,
            score,
            google=True,
            labels=_joined(rows, [[str(column.rows[row]).strip()] for row in rows]),
        )
    ]


def _tag_share(column: Column) -> float:
    """Share of values holding HTML tags (entities alone, ``A &gt; B``, are a path's escaping)."""
    if column.html_ratio == 0:
        return 0.0
    strings = column.strings[:300]
    return sum(1 for text in strings if _TAG.search(text)) / len(strings) if strings else 0.0


def _weighed_by_titles(candidates: list[_Candidate], titles: Mapping[int, str]) -> list[_Candidate]:
    """The finalists, each scored by how well titles predict its paths against the best of them
    (x (0.5 + 0.5 lift) / (0.5 + 0.5 best lift)): a product's category is what the product is,
    and its title says so; a field that merely nests (a platform's product kinds under a tax
    class) is not."""
    finalists = sorted(candidates, key=lambda candidate: -candidate.score)[:_FINALISTS]
    lifts = [
        _title_lift(candidate.labels(), titles) if candidate.labels else None
        for candidate in finalists
    ]
    best = max((lift for lift in lifts if lift is not None), default=None)
    if best is None:
        return finalists
    out = []
    for candidate, lift in zip(finalists, lifts, strict=True):
        if lift is None:
            out.append(candidate)
            continue
        evidence = f"{candidate.source.evidence}; titles predict it {lift:.0%} above chance"
        source = replace(candidate.source, evidence=evidence)
        factor = (0.5 + 0.5 * lift) / (0.5 + 0.5 * best)
        out.append(replace(candidate, source=source, score=candidate.score * factor))
    return out


def find_category(
    sample: Sample,
    *,
    titles: Mapping[int, str],
    claimed: set[str],
    taxonomy: Mapping[int, list[str]] | None = None,
) -> FieldSource | None:
    """The best category source of the sample, or None when nothing looks like one.

    ``titles`` maps sample rows to their casefolded titles; ``claimed`` paths are never used.
    """
    candidates: list[_Candidate] = []
    known = _google_paths(taxonomy)
    for column in sample.columns.values():
        if column.path in claimed or column.fill < 0.05:
            continue
        if taxonomy and column.num_ratio + column.numeric_text_ratio >= 0.9:
            candidates.extend(_google(column, taxonomy))
        if column.list_ratio >= 0.8:
            candidates.extend(_listed(column, titles, known))
        elif (
            column.str_ratio >= 0.8
            and column.url_ratio < 0.5
            and column.rel_url_ratio < 0.5
            and _tag_share(column) < 0.2
        ):
            candidates.extend(_delimited(column, titles, known))
            candidates.extend(_object_list(column, sample, titles))
    candidates.extend(_chains(sample, claimed))
    if not candidates:
        return None
    candidates = _weighed_by_titles(candidates, titles)
    best = max(candidates, key=lambda candidate: candidate.score)
    if best.google:
        # The feed's own category (a merchant's product_type) over the Google category it also
        # carries, when the own one is a fair candidate.
        own = max(
            (candidate for candidate in candidates if not candidate.google),
            key=lambda candidate: candidate.score,
            default=None,
        )
        if own is not None and own.score >= max(_MIN_SCORE, _OWN_OVER_GOOGLE * best.score):
            best = own
    return best.source if best.score >= _MIN_SCORE else None
