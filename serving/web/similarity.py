"""Similarity evaluation: neighbours of a product or an uploaded image, and judgements of them.

Searches reuse the similarity API's functions (:func:`prodcat.serving.api.neighbours_of_product`,
:func:`prodcat.serving.api.neighbours_of_image`), so the UI shows exactly what the API answers. A
judgement is a ``SimilarityJudgement`` on the compacted ``similarity.judgements`` topic (key:
:func:`prodcat.serving.web.view.judgement_key`), acknowledged before the page is told it is saved.

The embedder version of a product query is the newest image embedder in the model store (the
one the embed agent writes vectors with); an upload's is the version that embedded it.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from typing import Any, Final

from prodcat.core.ids import CATEGORY_ID_PATTERN
from prodcat.core.settings import Settings
from prodcat.schemas.serde import serde_for
from prodcat.serving.api import neighbours_of_image, neighbours_of_product
from prodcat.serving.backends import ModelBackend
from prodcat.serving.product_vectors import Mode, ProductVectors
from prodcat.serving.vector_store import Hit
from prodcat.serving.web.exceptions import InvalidInputError
from prodcat.serving.web.metrics import WebMetrics
from prodcat.serving.web.publisher import Publisher
from prodcat.serving.web.view import TopicView, judgement_key
from prodcat.training.labels import newest_version

CATEGORY_ID: Final = re.compile(f"^{CATEGORY_ID_PATTERN}$")
SHA256: Final = re.compile(r"^[0-9a-f]{64}$")
_MAX_ID: Final = 512


class SimilarityService:
    def __init__(
        self,
        settings: Settings,
        view: TopicView,
        vectors: ProductVectors,
        embedder: ModelBackend,
        publisher: Publisher,
        metrics: WebMetrics,
    ) -> None:
        self.topic = settings.topics.judgements
        self.serde = serde_for(
            "SimilarityJudgement", settings.serde.registry_url, topic=settings.topics.judgements
        )
        self.model_base = settings.serving.model_base
        self.embedder_name = settings.serving.embedder
        self.view = view
        self.vectors = vectors
        self.embedder = embedder
        self.publisher = publisher
        self.metrics = metrics

    @property
    def mode(self) -> Mode:
        """What a product query compares unless the page says otherwise."""
        return self.vectors.settings.mode

    def by_product(
        self, product_id: str, k: int, category: str | None, mode: Mode | None = None
    ) -> dict[str, Any]:
        _check_category(category)
        chosen = mode or self.mode
        hits = neighbours_of_product(
            self.vectors, product_id, k, category, exclude_self=True, mode=chosen
        )
        version = newest_version(self.model_base, self.embedder_name)
        query = {"query_product_id": product_id, "query_image_sha256": None, "mode": chosen}
        return self._result(query, self.view.product(product_id), hits, category, version)

    def by_image(self, data: bytes, k: int, category: str | None) -> dict[str, Any]:
        _check_category(category)
        hits, version = neighbours_of_image(self.embedder, self.vectors, data, k, category)
        query = {
            "query_product_id": None,
            "query_image_sha256": hashlib.sha256(data).hexdigest(),
            "mode": "image",
        }
        return self._result(query, None, hits, category, version)

    def _result(
        self,
        query: dict[str, Any],
        product: dict[str, Any] | None,
        hits: list[Hit],
        category: str | None,
        version: int | None,
    ) -> dict[str, Any]:
        products = self.view.products([h.product_id for h in hits])
        return {
            **query,
            "query_product": product,
            "category_id": category,
            "category_path": self.view.category_path(category) if category else None,
            "model_version": version,
            "hits": [
                {
                    "rank": rank,
                    "product_id": hit.product_id,
                    "score": round(hit.score, 4),
                    "category_path": " > ".join(hit.category_path),
                    "title": (products.get(hit.product_id) or {}).get("title"),
                    "brand": (products.get(hit.product_id) or {}).get("brand"),
                }
                for rank, hit in enumerate(hits, start=1)
            ],
        }

    def judge(self, annotator: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Validate and write one judgement; returns the record."""
        record = judgement_record(annotator, payload, time.time_ns() // 1_000_000)
        key = judgement_key(record).encode()
        self.publisher.send(self.topic, key, self.serde.encode(record))
        self.view.apply_judgement(key, record)
        self.metrics.judgements.labels("true" if record["relevant"] else "false").inc()
        return record


def _check_category(category: str | None) -> None:
    if category is not None and not CATEGORY_ID.match(category):
        raise InvalidInputError(f"category {category!r} is not a category id (c_ + 12 hex)")


def _text(payload: dict[str, Any], name: str, pattern: re.Pattern[str] | None = None) -> str | None:
    value = payload.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > _MAX_ID or (pattern and not pattern.match(value)):
        raise InvalidInputError(f"{name}: not a valid value")
    return value


def judgement_record(annotator: str, payload: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """A ``SimilarityJudgement`` from a page's JSON, or :class:`InvalidInputError`."""
    product = _text(payload, "query_product_id")
    image = _text(payload, "query_image_sha256", SHA256)
    if (product is None) == (image is None):
        raise InvalidInputError("give exactly one of query_product_id and query_image_sha256")
    neighbour = _text(payload, "neighbour_product_id")
    if neighbour is None:
        raise InvalidInputError("neighbour_product_id is missing")
    rank, score, relevant = payload.get("rank"), payload.get("score"), payload.get("relevant")
    if not isinstance(rank, int) or isinstance(rank, bool) or not 1 <= rank <= 100:
        raise InvalidInputError("rank must be an integer from 1 to 100")
    if not isinstance(score, int | float) or isinstance(score, bool) or not math.isfinite(score):
        raise InvalidInputError("score must be a finite number")
    if not isinstance(relevant, bool):
        raise InvalidInputError("relevant must be true or false")
    version = payload.get("model_version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        raise InvalidInputError("model_version must be an integer or null")
    return {
        "query_product_id": product,
        "query_image_sha256": image,
        "neighbour_product_id": neighbour,
        "rank": rank,
        "score": float(score),
        "relevant": relevant,
        "category_id": _text(payload, "category_id", CATEGORY_ID),
        "model_version": version,
        "annotator": annotator,
        "judged_at": now_ms,
    }
