"""Similar products by image, by title, or both: two collections and a fused search over them.

Every product can have an image vector (the image embedder's, in ``milvus.collection``) and a title
vector (:mod:`prodcat.serving.text_vectors`, in ``milvus.text_collection``); both collections have
the same fields, so either can be restricted to a category subtree the same way. A search has a
mode:

- ``image``: the image collection alone (what the API answered before titles were stored);
- ``text``: the title collection alone;
- ``hybrid``: each collection proposes its ``candidates`` nearest products under the same
  restriction; every candidate is then scored on **both** sides (the side that did not propose it
  is looked up by id, so no candidate is scored on one side only) and ranked by
  ``text_weight x title cosine + (1 - text_weight) x image cosine``, or, with ``fusion = "rrf"``,
  by reciprocal-rank fusion of the two lists (``1 / (60 + rank)``, weighted the same way).
  A product with no vector on one side scores 0 there. A query with one side only (an uploaded
  image; a product without an image) is answered by that side.

**The same kind of thing.** People looking for similar products want items that look alike *and*
are the same kind of product. With a ``kinds`` lookup (product id -> its top-1 predicted category
and that category's probability, from the classify stage's predictions) and a query product, every
candidate whose predicted category is the query's gains ``kind_weight x sqrt(p_query x
p_candidate)`` before the final ranking (in every mode; ``candidates`` of them are ranked). The
probabilities make the term fade where the model is unsure of either product, so a model that
knows the products poorly costs little.

Two collections rather than one with two vector fields: Milvus 2.3 servers allow one vector field
per collection, and milvus-lite and every server version accept this layout; the fused ranking
is computed here, the same way on every backend.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final, Literal

import numpy as np

from prodcat.core.settings import MilvusSettings, SimilaritySettings
from prodcat.serving.text_vectors import TEXT_VECTOR_VERSION, has_words, text_vectors
from prodcat.serving.vector_store import Hit, ImageVector, VectorStore

__all__ = ["MODES", "Kinds", "Mode", "ProductVectors", "QueryVectors", "fuse", "same_kind"]

#: product ids -> (top-1 predicted category id, its probability) of those with a prediction
Kinds = Callable[[Sequence[str]], Mapping[str, tuple[str, float]]]

Mode = Literal["image", "text", "hybrid"]
MODES: Final[tuple[Mode, ...]] = ("image", "text", "hybrid")
RRF_K: Final = 60
_RECHECK_S: Final = 60.0


@dataclass(frozen=True, slots=True)
class QueryVectors:
    """What a search compares: an image vector, a title vector, or both (None: not available)."""

    image: np.ndarray | None = None
    text: np.ndarray | None = None

    def empty(self) -> bool:
        return self.image is None and self.text is None


def fuse(
    image_scores: dict[str, float],
    text_scores: dict[str, float],
    text_weight: float,
    fusion: Literal["weighted", "rrf"],
    image_ranked: Sequence[str] = (),
    text_ranked: Sequence[str] = (),
) -> list[tuple[str, float]]:
    """Candidates by fused score, best first (ties by product id, for a stable order).

    ``weighted`` uses the cosines of both sides (a missing one counts 0); ``rrf`` the ranks in the
    two proposal lists (a product a list did not propose gets nothing from it).
    """
    ids = set(image_scores) | set(text_scores)
    fused: dict[str, float] = {}
    if fusion == "weighted":
        for pid in ids:
            fused[pid] = text_weight * text_scores.get(pid, 0.0) + (
                1.0 - text_weight
            ) * image_scores.get(pid, 0.0)
    else:
        for pid in ids:
            fused[pid] = 0.0
        for rank, pid in enumerate(image_ranked, start=1):
            fused[pid] += (1.0 - text_weight) / (RRF_K + rank)
        for rank, pid in enumerate(text_ranked, start=1):
            fused[pid] += text_weight / (RRF_K + rank)
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


class ProductVectors:
    """The image and title collections, written together and searched in any mode.

    The two stores share the Milvus address (and, for milvus-lite, the process's one server).
    Every error is the stores' :class:`~prodcat.serving.exceptions.VectorStoreError`.
    """

    def __init__(
        self,
        milvus: MilvusSettings,
        similarity: SimilaritySettings | None = None,
        *,
        observe: Callable[[str, float, str | None], None] | None = None,
        images: VectorStore | None = None,
        texts: VectorStore | None = None,
        kinds: Kinds | None = None,
    ) -> None:
        self.settings = similarity or SimilaritySettings()
        self.kinds = kinds
        self.images = images or VectorStore(milvus, observe=observe)
        text_settings = milvus.model_copy(
            update={"collection": milvus.text_collection, "dim": milvus.text_dim}
        )
        self.texts = texts or VectorStore(text_settings, observe=observe)
        self.text_dim = milvus.text_dim
        self._titles_seen_at: float | None = None  # when the title collection was last missing

    def ensure_collections(self) -> None:
        self.images.ensure_collection()
        self.texts.ensure_collection()

    def close(self) -> None:
        self.images.close()
        self.texts.close()

    def count(self) -> dict[str, int]:
        return {
            "images": self.images.count(),
            "texts": self.texts.count() if self.has_titles() else 0,
        }

    def has_titles(self) -> bool:
        """Whether title vectors can be searched: stored by the embed stage
        (``PRODCAT_SIMILARITY__TEXT_VECTORS``) and their collection made. A missing collection is
        looked for again after a minute (the embed stage may start after this process)."""
        if not self.settings.text_vectors:
            return False
        now = time.monotonic()
        if self._titles_seen_at is not None and now - self._titles_seen_at < _RECHECK_S:
            return False
        if self.texts.exists():
            self._titles_seen_at = None
            return True
        self._titles_seen_at = now
        return False

    # -- writing --------------------------------------------------------------------------------

    def title_rows(
        self, products: Iterable[tuple[str, str, Sequence[str], str]]
    ) -> list[ImageVector]:
        """Title-vector rows of ``(product_id, title, category_path, image_url)``; a title without
        a letter or digit gives no row."""
        items = list(products)
        vectors = text_vectors([title for _, title, _, _ in items], self.text_dim)
        return [
            ImageVector(pid, vectors[i], list(path), TEXT_VECTOR_VERSION, url)
            for i, (pid, title, path, url) in enumerate(items)
            if has_words(title) and np.any(vectors[i])
        ]

    def delete(self, product_ids: Iterable[str]) -> None:
        ids = list(product_ids)
        self.images.delete(ids)
        self.texts.delete(ids)

    # -- searching ------------------------------------------------------------------------------

    def title_vector(self, text: str) -> np.ndarray | None:
        """The query vector of free text (None without a letter or digit, or without title
        vectors to compare it with)."""
        if not self.has_titles():
            return None
        vector = text_vectors([text], self.text_dim)[0]
        return vector if has_words(text) and np.any(vector) else None

    def of_product(self, product_id: str, mode: Mode) -> QueryVectors:
        """The stored vectors of a product that ``mode`` uses."""
        image = self.images.get_vector(product_id) if mode != "text" else None
        text = self.texts.get_vector(product_id) if mode != "image" and self.has_titles() else None
        return QueryVectors(image, text)

    def search(
        self,
        query: QueryVectors,
        k: int,
        *,
        category_id: str | None = None,
        exclude: str | None = None,
        of: str | None = None,
    ) -> list[Hit]:
        """The ``k`` best products for ``query`` (see the module doc); ``exclude`` (the query
        product) is left out of the results; ``of``: the product the query vectors are of, whose
        predicted kind the same-kind term compares with."""
        if k <= 0 or query.empty():
            return []
        wanted = k + int(exclude is not None)
        kind = self._kind_of(of)
        # with the same-kind term, every candidate is ranked again: ask for them all
        pool = max(self.settings.candidates, 4 * wanted) if kind is not None else wanted
        if query.image is not None and query.text is not None:
            hits = self._hybrid(query.image, query.text, wanted, category_id, keep=pool)
        elif query.image is not None:
            hits = self.images.search(query.image, pool, category_id=category_id)
        elif query.text is not None:
            hits = self.texts.search(query.text, pool, category_id=category_id)
        hits = [h for h in hits if h.product_id != exclude]
        if kind is not None and self.kinds is not None:
            kinds = self.kinds([h.product_id for h in hits])
            hits = same_kind(hits, kind, kinds, self.settings.kind_weight)
        return hits[:k]

    def _kind_of(self, product_id: str | None) -> tuple[str, float] | None:
        if product_id is None or self.kinds is None or self.settings.kind_weight <= 0:
            return None
        return self.kinds([product_id]).get(product_id)

    def _hybrid(
        self,
        image: np.ndarray,
        text: np.ndarray,
        k: int,
        category_id: str | None,
        keep: int,
    ) -> list[Hit]:
        """The ``keep`` best by the fused score of ``candidates`` (at least ``4 k``) per side."""
        many = max(self.settings.candidates, 4 * k)
        by_image = self.images.search(image, many, category_id=category_id)
        by_text = self.texts.search(text, many, category_id=category_id)
        shown = {h.product_id: h for h in by_text} | {h.product_id: h for h in by_image}
        image_scores = {h.product_id: h.score for h in by_image}
        text_scores = {h.product_id: h.score for h in by_text}
        if self.settings.fusion == "weighted":
            _score_missing(self.images, image, image_scores, shown)
            _score_missing(self.texts, text, text_scores, shown)
        ranked = fuse(
            image_scores,
            text_scores,
            self.settings.text_weight,
            self.settings.fusion,
            [h.product_id for h in by_image],
            [h.product_id for h in by_text],
        )
        return [replace(shown[pid], score=score) for pid, score in ranked[:keep]]


def same_kind(
    hits: Sequence[Hit],
    kind: tuple[str, float],
    kinds: Mapping[str, tuple[str, float]],
    weight: float,
) -> list[Hit]:
    """``hits`` re-ranked with the same-kind term: + ``weight`` x sqrt(p x p') for each hit whose
    predicted category is ``kind``'s (ties keep the earlier rank)."""
    category, confidence = kind
    scored = []
    for rank, hit in enumerate(hits):
        other = kinds.get(hit.product_id)
        bonus = 0.0
        if other is not None and other[0] == category:
            bonus = weight * float(np.sqrt(max(confidence, 0.0) * max(other[1], 0.0)))
        scored.append((hit.score + bonus, rank, hit))
    scored.sort(key=lambda item: (-item[0], item[1]))
    return [replace(hit, score=score) for score, _, hit in scored]


def _score_missing(
    store: VectorStore, query: np.ndarray, scores: dict[str, float], candidates: dict[str, Hit]
) -> None:
    """Score on ``store``'s side the candidates only the other side proposed (by their vectors)."""
    missing = [pid for pid in candidates if pid not in scores]
    if not missing:
        return
    unit = query / max(float(np.linalg.norm(query)), 1e-12)
    for pid, vector in store.get_vectors(missing).items():
        scores[pid] = float(vector @ unit)
