"""Classification as pure functions: products → model inputs, model outputs → ``Prediction`` records.

The classify agent (``prodcat.streams.classify_agent``) only decodes, batches, calls the backend and sends;
everything a prediction holds is computed here and testable without Kafka or TensorFlow.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from prodcat.core.model_store import ClassifierCard
from prodcat.schemas.records import CategoryScore, Prediction, Product
from prodcat.serving.backends import ModelOutput
from prodcat.serving.committee import committee_scores
from prodcat.serving.exceptions import ModelSignatureError
from prodcat.training import acquisition
from prodcat.training.decisions import DecisionModel
from prodcat.training.mappings import is_under

Array = np.ndarray[Any, Any]
EXCLUSIVE_PROBS = "exclusive_probs"
RULE_BASED_PROBS = "rule_based_probs"


def uncertainty(probs: Array) -> Array:
    """Per row: least confidence (1 - p1), margin (p1 - p2) and entropy (nats), shape [n, 3]."""
    return np.stack(
        [acquisition.least_confidence(probs), 1.0 - acquisition.margin(probs),
         acquisition.entropy(probs)],
        axis=1,
    )  # fmt: skip


def _top_k(probs: Array, k: int) -> Array:
    k = min(k, probs.shape[1])
    part = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(probs, part, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(part, order, axis=1)


def predictions(
    products: Sequence[Product],
    output: ModelOutput,
    card: ClassifierCard,
    *,
    top_k: int,
    rule_threshold: float,
    now_ms: int,
    committee: Sequence[tuple[ClassifierCard, ModelOutput]] = (),
    within: Sequence[tuple[str, ...]] | None = None,
) -> list[Prediction]:
    """One ``Prediction`` record per product, from the outputs of ``card``'s model version.

    ``committee``: older versions' outputs (with their cards) for the same products; with at least
    one, the uncertainty holds the committee's vote entropy and KL to the consensus (the members
    aligned on ``card``'s classes, see ``prodcat.serving.committee``), otherwise those are null.
    ``within``: per product, a node of the tree it is known to belong to (an approved
    feed-category mapping), or ``()``: its exclusive probabilities are conditioned on that subtree
    (:func:`restrict`) before anything is computed from them.
    """
    probs = output.outputs.get(EXCLUSIVE_PROBS)
    if probs is None or probs.shape != (len(products), len(card.class_ids)):
        shape = None if probs is None else probs.shape
        raise ModelSignatureError(
            f"{output.name} v{output.version}: {EXCLUSIVE_PROBS} has shape {shape}, expected "
            f"({len(products)}, {len(card.class_ids)}) from its model card"
        )
    if within is not None and any(within):
        probs = restrict(probs, card, within)
    rules = output.outputs.get(RULE_BASED_PROBS)
    if rules is None or rules.shape[1] != len(card.rule_ids):
        rules = np.zeros((len(products), 0), dtype=np.float32)
    scores = uncertainty(probs)
    members = [(card.class_ids, probs)] + [
        (member_card.class_ids, member.outputs[EXCLUSIVE_PROBS])
        for member_card, member in committee
        if _fits(member, member_card, len(products))
    ]
    qbc = committee_scores(card.class_ids, members)
    top = _top_k(probs, top_k)
    decided = decision_model(card).decide(probs) if card.decision_thresholds else None
    target = card.decision_target or 0.0
    records: list[Prediction] = []
    for row, product in enumerate(products):
        exclusive: list[CategoryScore] = [
            {
                "category_id": card.class_ids[i],
                "path": list(card.class_paths[i]),
                "probability": float(probs[row, i]),
            }
            for i in top[row]
        ]
        positives = np.flatnonzero(rules[row] >= rule_threshold)
        positives = positives[np.argsort(-rules[row, positives], kind="stable")]
        rule_based: list[CategoryScore] = [
            {
                "category_id": card.rule_ids[i],
                "path": list(card.rule_paths[i]),
                "probability": float(rules[row, i]),
            }
            for i in positives
        ]
        least_confidence, margin, entropy = scores[row]
        records.append(
            {
                "product_id": product["product_id"],
                "content_hash": product.get("content_hash"),
                "model_name": output.name,
                "model_version": output.version,
                "exclusive_top_k": exclusive,
                "rule_based_positives": rule_based,
                "uncertainty": {
                    "least_confidence": float(least_confidence),
                    "margin": float(margin),
                    "entropy": float(entropy),
                    "vote_entropy": None if qbc is None else float(qbc[0][row]),
                    "kl_consensus": None if qbc is None else float(qbc[1][row]),
                },
                "predicted_at": now_ms,
                "decision": None
                if decided is None
                else {
                    "kind": decided[row].kind,
                    "category_id": decided[row].category_id,
                    "path": list(decided[row].path),
                    "probability": decided[row].probability,
                    "target": target,
                },
            }
        )
    return records


@functools.lru_cache(maxsize=4096)
def _subtree_mask(card: ClassifierCard, node: tuple[str, ...]) -> Array | None:
    """The classes of ``card`` at ``node`` or below it; else (a node deeper than the classes) the
    deepest class on its path (an internal class means "none of my children"); None when
    neither exists."""
    under = np.array([is_under(path, node) for path in card.class_paths], dtype=bool)
    if under.any():
        return under
    depths = [len(path) if is_under(node, path) else 0 for path in card.class_paths]
    deepest = max(depths, default=0)
    return np.array(depths) == deepest if deepest else None


def restrict(probs: Array, card: ClassifierCard, within: Sequence[tuple[str, ...]]) -> Array:
    """Each row conditioned on its node's subtree: the probabilities of the classes outside it
    set to 0, the rest renormalised (a row whose subtree the model gives no mass keeps its own)."""
    out = np.array(probs, dtype=np.float64, copy=True)
    for row, node in enumerate(within):
        mask = _subtree_mask(card, tuple(node)) if node else None
        if mask is None:
            continue
        mass = float(out[row, mask].sum())
        if mass <= 0.0:
            continue
        out[row, ~mask] = 0.0
        out[row, mask] /= mass
    return out.astype(probs.dtype, copy=False)


@functools.lru_cache(maxsize=8)
def decision_model(card: ClassifierCard) -> DecisionModel:
    """The back-off decisions of ``card``'s thresholds (built once per card: the node matrix)."""
    return DecisionModel(
        card.class_ids, card.class_paths, dict(card.decision_thresholds), card.decision_target
    )


def _fits(output: ModelOutput, card: ClassifierCard, n: int) -> bool:
    probs = output.outputs.get(EXCLUSIVE_PROBS)
    return probs is not None and probs.shape == (n, len(card.class_ids))
