"""``prodcat similarity weights``: the hybrid text weight people's judgements support.

Reads every live judgement of a product query from ``similarity.judgements``, looks up the image
and title vectors of both products, and ranks the candidate weights by how well the fused score
separates relevant from irrelevant neighbours (:mod:`prodcat.training.similarity_weights`).
Judgements of uploaded images (no title) and pairs missing a vector on either side are skipped
and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prodcat.core.settings import Settings
from prodcat.schemas.serde import serde_for
from prodcat.serving.product_vectors import ProductVectors
from prodcat.streams.compacted import read_compacted
from prodcat.training.similarity_weights import WeightChoice, choose_text_weight

__all__ = ["JudgedPairs", "judged_pairs", "suggest_text_weight"]


@dataclass
class JudgedPairs:
    """Cosines of judged (query, neighbour) pairs, and what could not be used."""

    image: list[float]
    text: list[float]
    relevant: list[bool]
    uploads: int = 0
    missing_vectors: int = 0


def judged_pairs(settings: Settings, vectors: ProductVectors) -> JudgedPairs:
    serde = serde_for(
        "SimilarityJudgement", settings.serde.registry_url, topic=settings.topics.judgements
    )
    live = read_compacted(settings.kafka, settings.topics.judgements)
    pairs: list[tuple[str, str, bool]] = []
    found = JudgedPairs([], [], [])
    for value in live.values.values():
        record = serde.decode(value)
        if record["query_product_id"] is None:
            found.uploads += 1
            continue
        pairs.append(
            (record["query_product_id"], record["neighbour_product_id"], record["relevant"])
        )
    ids = {pid for query, neighbour, _ in pairs for pid in (query, neighbour)}
    images = vectors.images.get_vectors(ids)
    titles = vectors.texts.get_vectors(ids)
    for query, neighbour, relevant in pairs:
        if not all(pid in side for pid in (query, neighbour) for side in (images, titles)):
            found.missing_vectors += 1
            continue
        found.image.append(float(np.dot(images[query], images[neighbour])))
        found.text.append(float(np.dot(titles[query], titles[neighbour])))
        found.relevant.append(bool(relevant))
    return found


def suggest_text_weight(settings: Settings) -> tuple[WeightChoice, JudgedPairs]:
    """The suggested weight (raises ``TrainingError`` when the judgements are too few)."""
    vectors = ProductVectors(settings.milvus, settings.similarity)
    try:
        pairs = judged_pairs(settings, vectors)
    finally:
        vectors.close()
    choice = choose_text_weight(
        pairs.image, pairs.text, pairs.relevant, settings.similarity.text_weight
    )
    return choice, pairs
