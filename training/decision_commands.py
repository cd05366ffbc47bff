"""``prodcat experiment decisions``: coverage and precision of back-off decisions per level.

The served classifier (its newest version in the model store, trained on the fixed protocol) scores
the protocol's test split; products are split in two by id hash: thresholds are chosen on one half
(the calibration half, as the retrain job chooses them on its holdout) and coverage and precision
per level are measured on the other. For each precision target: how many products get a category
at each depth, how precise those are, and how many decisions are leaf / backed-off / abstained,
next to the plain top-1 class.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prodcat.core.model_store import ClassifierCard, available_versions, load_card
from prodcat.training.dataset import Example, demo_examples, model_inputs, protocol_split
from prodcat.training.decisions import (
    Decision,
    DecisionModel,
    coverage_report,
    fit_thresholds,
)
from prodcat.training.exceptions import TrainingError
from prodcat.training.inputs import model_inputs as serving_inputs


def _half(product_id: str) -> int:
    return hashlib.sha1(product_id.encode()).digest()[0] & 1


def class_probabilities(version_dir: Path, examples: Sequence[Example]) -> np.ndarray[Any, Any]:
    import tensorflow as tf

    function = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    parts = []
    for start in range(0, len(examples), 512):
        products = [model_inputs(e) for e in examples[start : start + 512]]
        inputs = {k: tf.constant(v) for k, v in serving_inputs(products).items()}
        parts.append(function(**inputs)["exclusive_probs"].numpy())
    return np.concatenate(parts)


def decisions_report(
    data_dir: Path,
    model_base: Path,
    name: str,
    targets: Sequence[float],
    *,
    examples: Sequence[Example] | None = None,
) -> str:
    versions = available_versions(model_base / name)
    if not versions:
        raise TrainingError(f"no {name} model in {model_base}: run `prodcat train` first")
    version_dir = model_base / name / str(versions[-1])
    raw = load_card(version_dir)
    card = ClassifierCard.from_dict(raw)
    level = int((raw.get("data") or {}).get("level") or max(len(p) for p in card.class_paths))
    examples = list(examples) if examples is not None else demo_examples(data_dir)
    split = protocol_split(examples, level)
    test = list(split.test)
    probs = class_probabilities(version_dir, test)
    truth = [e.path[:level] for e in test]
    calibration = [i for i, e in enumerate(test) if _half(e.product_id) == 0]
    evaluation = [i for i, e in enumerate(test) if _half(e.product_id) == 1]
    plain = DecisionModel(card.class_ids, card.class_paths)
    lines = [
        f"{name} v{versions[-1]} (L{level}, {len(card.class_ids)} classes) on the protocol test "
        f"split: {len(calibration)} products choose the thresholds, {len(evaluation)} measure",
        "",
        "| target | depth | coverage | precision | top-1 precision at this depth |",
        "|---:|---:|---:|---:|---:|",
    ]
    top1 = [
        Decision("leaf", None, card.class_paths[int(i)], 1.0) for i in probs[evaluation].argmax(1)
    ]
    top1_report = {c.depth: c for c in coverage_report(top1, [truth[i] for i in evaluation])}
    kinds_lines = []
    for target in targets:
        fitted = fit_thresholds(
            plain, probs[calibration], [truth[i] for i in calibration], target=target
        )
        decided = fitted.decide(probs[evaluation])
        for row in coverage_report(decided, [truth[i] for i in evaluation]):
            lines.append(
                f"| {target:.2f} | L{row.depth} | {row.coverage:.3f} | {row.precision:.4f} | "
                f"{top1_report[row.depth].precision:.4f} |"
            )
        kinds = Counter(d.kind for d in decided)
        total = len(decided)
        kinds_lines.append(
            f"target {target:.2f}: leaf {kinds['leaf'] / total:.3f}, backed off "
            f"{kinds['backed_off'] / total:.3f}, abstained {kinds['abstained'] / total:.3f}"
        )
    return "\n".join([*lines, "", *kinds_lines])
