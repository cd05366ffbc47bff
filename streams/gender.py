"""Gender / target group: men, women, boys, girls, unisex, kids or baby.

Words are read from every gender-like field of a record (``gender``, ``ageGroup``,
``ideal_for``, ...) together, so Myntra's ``gender: "Women"`` with ``ageGroup: "Kids-Girls"``
is ``girls``. The most specific group wins: baby, then boys/girls (both: kids), then kids,
then unisex (or men and women together), then men or women.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

__all__ = ["GENDERS", "gender_words", "resolve_gender"]

GENDERS: Final = ("men", "women", "boys", "girls", "unisex", "kids", "baby")
_MAX_TEXT: Final = 1000
_WORD: Final = re.compile(r"[a-z]+")
_WORDS: Final = {
    "men": "men",
    "man": "men",
    "mens": "men",
    "male": "men",
    "males": "men",
    "gents": "men",
    "gent": "men",
    "gentlemen": "men",
    "women": "women",
    "woman": "women",
    "womens": "women",
    "female": "women",
    "females": "women",
    "ladies": "women",
    "lady": "women",
    "boy": "boys",
    "boys": "boys",
    "girl": "girls",
    "girls": "girls",
    "unisex": "unisex",
    "kid": "kids",
    "kids": "kids",
    "children": "kids",
    "childrens": "kids",
    "child": "kids",
    "baby": "baby",
    "babies": "baby",
    "infant": "baby",
    "infants": "baby",
    "newborn": "baby",
    "toddler": "baby",
    "toddlers": "baby",
}
# Single letters count only when they are the whole value ("M", "F").
_LETTERS: Final = {"m": "men", "f": "women", "w": "women", "u": "unisex"}


def gender_words(text: str) -> set[str]:
    """The gender groups named in ``text``."""
    lowered = text[:_MAX_TEXT].lower()
    letter = _LETTERS.get(lowered.strip().rstrip("."))
    if letter is not None:
        return {letter}
    return {_WORDS[word] for word in _WORD.findall(lowered) if word in _WORDS}


def resolve_gender(groups: Iterable[str]) -> str | None:
    """The one group that describes all of ``groups`` best, or None."""
    found = set(groups)
    if not found:
        return None
    if "baby" in found:
        return "baby"
    if "boys" in found and "girls" in found:
        return "kids"
    for group in ("boys", "girls", "kids"):
        if group in found:
            return group
    if "unisex" in found or {"men", "women"} <= found:
        return "unisex"
    return "men" if "men" in found else "women"
