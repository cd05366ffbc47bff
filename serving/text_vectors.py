"""Dense vectors of product titles for similarity search: hashed character n-grams, any language.

A title's vector is its character 3- to 5-grams (within words, lower-cased, accents kept) hashed
into ``dim`` signed buckets, with counts damped by ``log1p`` and the whole scaled to unit length.
No vocabulary, no model file, nothing fitted: the embed stage and every searcher compute the same
vector from the same string, on any machine, for any language or script, at tens of thousands of
titles a second. Measured against a pretrained English sentence encoder on the Myntra thumbnails'
titles (docs/benchmarks.md): nearly the same precision, 75x faster, and not tied to one language.

:data:`TEXT_VECTOR_VERSION` is stored with every row (``model_version``): a change to this function
must bump it, and the embed stage's backfill then rewrites the rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
from sklearn.feature_extraction.text import HashingVectorizer

__all__ = ["TEXT_VECTOR_DIM", "TEXT_VECTOR_VERSION", "has_words", "product_text", "text_vectors"]

TEXT_VECTOR_VERSION: Final = 1
TEXT_VECTOR_DIM: Final = 256
_NGRAMS: Final = (3, 5)
_MAX_CHARS: Final = 512  # a title longer than this says nothing more about what the product is

_hashers: dict[int, HashingVectorizer] = {}


def _hasher(dim: int) -> HashingVectorizer:
    hasher = _hashers.get(dim)
    if hasher is None:
        hasher = HashingVectorizer(
            analyzer="char_wb",
            ngram_range=_NGRAMS,
            n_features=dim,
            alternate_sign=True,
            norm=None,
            lowercase=True,
            dtype=np.float32,
        )
        _hashers[dim] = hasher
    return hasher


def product_text(title: str | None) -> str:
    """The text a product's vector is made of: its title, whitespace collapsed, bounded."""
    return " ".join((title or "").split())[:_MAX_CHARS]


def has_words(text: str | None) -> bool:
    """Whether ``text`` holds a letter or digit in any script (else it has nothing to compare)."""
    return any(ch.isalnum() for ch in text or "")


def text_vectors(texts: Sequence[str], dim: int = TEXT_VECTOR_DIM) -> np.ndarray:
    """float32 ``[len(texts), dim]``, unit rows; a text without any n-gram gives a zero row."""
    if dim < 8:
        raise ValueError(f"text vectors need at least 8 dimensions, got {dim}")
    if not texts:
        return np.zeros((0, dim), dtype=np.float32)
    counts = _hasher(dim).transform([product_text(t) for t in texts]).toarray()
    damped = np.sign(counts) * np.log1p(np.abs(counts))
    norms = np.linalg.norm(damped, axis=1, keepdims=True)
    vectors: np.ndarray = np.divide(
        damped, norms, out=np.zeros_like(damped), where=norms > 0
    ).astype(np.float32, copy=False)
    return vectors
