"""Keyword rules from category names in any language (``prodcat rules seed``).

:func:`prodcat.training.rules.name_keywords` knows English (audience words, plurals); a taxonomy
of a German, Portuguese, Turkish or Swedish shop needs keywords without word lists. Here a name
is folded (:func:`prodcat.training.rules.fold`: NFKC, casefold, Turkish dotted/dotless i as one
letter), split into parts on punctuation (``,`` ``;`` ``/`` ``&`` ``+`` ``|`` parentheses and
`` - ``), and each part proposes

* the part as a phrase (all its words, "riding gear", "vinho tinto"),
* its last word, and with ``stems`` that word as a prefix stem (``"käse*"``: "käsesorten",
  Turkish suffixes "peynirleri") and as a compound tail (``"*käse"``: "frischkäse", "rödvin"
  from "vin" is too short: stems need :data:`STEM_MIN` letters),
* with ``first_word`` also its first word (head-first languages: Portuguese "vinhos tintos").

Words of one or two letters, numbers and words in more than ``max_share`` of all names (function
words: "und", "och", "para") are never keywords on their own. Which node owns a keyword that
several names propose, and what blocks it, is :func:`prodcat.training.rules.seed_rules`'s job.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Final

from prodcat.training.rules import Rule, fold, seed_rules, tokenize
from prodcat.training.taxonomy import CategoryTree

__all__ = ["STEM_MIN", "any_language_keywords", "name_parts", "seed_any_language"]

STEM_MIN: Final = 5
MIN_WORD: Final = 3
_PARTS: Final = re.compile(r"\s*(?:[,;/&+|()\[\]]|\s-\s)\s*")


def name_parts(name: str) -> list[tuple[str, ...]]:
    """The folded word tokens of each part of a category name."""
    return [words for words in (tokenize(p) for p in _PARTS.split(fold(name))) if words]


def _word(word: str) -> bool:
    return len(word) >= MIN_WORD and not word.isdigit()


def any_language_keywords(
    name: str,
    *,
    stems: bool = True,
    first_word: bool = False,
    common: frozenset[str] = frozenset(),
    stem_cut: int = 1,
) -> set[str]:
    """Keywords of one category name (see the module doc); ``common`` words are never alone."""
    keywords: set[str] = set()
    for words in name_parts(name):
        if len(words) > 1:
            keywords.add(" ".join(words))
        singles = [words[-1], words[0]] if first_word else [words[-1]]
        for word in singles:
            if not _word(word) or word in common:
                continue
            keywords.add(word)
            if stems and len(word) >= STEM_MIN:
                # the prefix stem drops an inflection's last letters ("iogurtes" -> "iogurt*")
                keywords |= {word[: max(STEM_MIN, len(word) - stem_cut)] + "*", "*" + word}
    return keywords


def common_words(
    names: Iterable[str], *, max_share: float = 0.02, min_names: int = 3
) -> frozenset[str]:
    """Words in more than ``max_share`` of the names (and at least ``min_names``): function words."""
    counts: Counter[str] = Counter()
    total = 0
    for name in names:
        total += 1
        counts.update({word for words in name_parts(name) for word in words})
    floor = max(min_names, max_share * total)
    return frozenset(word for word, count in counts.items() if count > floor)


def seed_any_language(
    tree: CategoryTree,
    *,
    nodes: Iterable[str] | None = None,
    stems: bool = True,
    first_word: bool = False,
    max_share: float = 0.02,
    stem_cut: int = 1,
) -> list[Rule]:
    """:func:`seed_rules` with :func:`any_language_keywords` for the tree's names."""
    common = common_words((node.name for node in tree), max_share=max_share)

    def keywords(name: str) -> set[str]:
        return any_language_keywords(
            name, stems=stems, first_word=first_word, common=common, stem_cut=stem_cut
        )

    propose: Callable[[str], set[str]] = keywords
    return seed_rules(tree, nodes=nodes, keywords_of=propose)
