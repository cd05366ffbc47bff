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
from prodcat.training.data_files import level_of
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
    truth = [tuple(label.split(" > ")) for label in split.test_labels]  # the protocol's classes
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


def _shifted(example: Example, kind: str) -> Example:
    """A product as a shifted feed might send it."""
    from dataclasses import replace

    words = example.title.split()
    if kind == "two_words":
        return replace(example, title=" ".join(words[:2]), brand=None, description=None)
    if kind == "no_brand_shuffled":
        shuffled = sorted(words, key=lambda w: hashlib.sha1(w.encode()).digest())
        return replace(example, title=" ".join(shuffled), brand=None, description=None)
    return example


SHIFTS = ("none", "two_words", "no_brand_shuffled")


def _estimate_rows(
    name: str,
    probs_of: Any,
    calibration: Sequence[Example],
    evaluation: Sequence[Example],
    truth_index: Any,
) -> list[str]:
    from prodcat.training.calibration import estimated_accuracy, fit_temperature

    cal_probs = probs_of(calibration)
    temperature = fit_temperature(cal_probs, truth_index(calibration))
    rows = []
    mixture: list[tuple[Any, Any]] = []
    for shift in SHIFTS:
        shifted = [_shifted(e, shift) for e in evaluation]
        probs = probs_of(shifted)
        truth = truth_index(evaluation)
        true = float((probs.argmax(1) == truth).mean())
        raw = float(probs.max(axis=1).mean())
        estimate = estimated_accuracy(probs, temperature)
        rows.append(
            f"| {name} | {shift} | {len(shifted)} | {true:.4f} | {estimate:.4f} | "
            f"{estimate - true:+.4f} | {raw:.4f} | {temperature:.2f} |"
        )
        mixture.append((probs, truth))
    half = len(evaluation) // 2
    probs = np.concatenate([mixture[0][0][:half], mixture[1][0][half:]])
    truth = np.concatenate([mixture[0][1][:half], mixture[1][1][half:]])
    true = float((probs.argmax(1) == truth).mean())
    estimate = estimated_accuracy(probs, temperature)
    rows.append(
        f"| {name} | half none, half two_words | {len(truth)} | {true:.4f} | {estimate:.4f} | "
        f"{estimate - true:+.4f} | {float(probs.max(axis=1).mean()):.4f} | {temperature:.2f} |"
    )
    return rows


def accuracy_estimate_report(
    data_dir: Path,
    model_base: Path,
    name: str,
    feeds: Sequence[tuple[str, Sequence[Example]]] = (),
) -> str:
    """Label-free accuracy estimates against the truth: the served classifier on the demo's test
    split and, per extra ``feeds`` (name, examples), a TF-IDF logistic regression trained on its
    protocol split (a stand-in model: the method does not depend on the model). Temperatures are
    fitted on one half of each test split; estimates are on the other half, as sent and shifted."""
    header = [
        "| data | shift | products | true accuracy | estimate | error | raw confidence | T |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    rows: list[str] = []
    versions = available_versions(model_base / name)
    if versions:
        version_dir = model_base / name / str(versions[-1])
        raw = load_card(version_dir)
        card = ClassifierCard.from_dict(raw)
        level = int((raw.get("data") or {}).get("level") or 3)
        split = protocol_split(demo_examples(data_dir), level)
        from prodcat.core.ids import normalize_name

        def key(path: Sequence[str]) -> tuple[str, ...]:
            return tuple(normalize_name(x) for x in path)

        keyed = {key(p): i for i, p in enumerate(card.class_paths)}
        label_of = dict(zip(split.test, split.test_labels, strict=True))  # the protocol's classes

        def served_truth(examples: Sequence[Example]) -> Any:
            return np.array([keyed.get(key(label_of[e].split(" > ")), -1) for e in examples])

        test = list(split.test)
        rows += _estimate_rows(
            f"{name} v{versions[-1]} (demo L{level})",
            lambda examples: class_probabilities(version_dir, examples),
            [e for e in test if _half(e.product_id) == 0],
            [e for e in test if _half(e.product_id) == 1],
            served_truth,
        )
    for feed, examples in feeds:
        rows += _feed_rows(feed, examples)
    return "\n".join(header + rows)


def _feed_rows(feed: str, examples: Sequence[Example]) -> list[str]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    level = level_of(examples)  # as `train --data` picks it
    split = protocol_split(examples, level)
    vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2))
    x = vectorizer.fit_transform([e.title for e in split.train])
    classes = sorted(set(split.train_labels))
    position = {c: i for i, c in enumerate(classes)}
    model = LogisticRegression(C=10.0, max_iter=2000).fit(
        x, [position[c] for c in split.train_labels]
    )
    label_of = dict(zip(split.test, split.test_labels, strict=True))

    def probs_of(items: Sequence[Example]) -> Any:
        return model.predict_proba(vectorizer.transform([e.title for e in items]))

    def truth_index(items: Sequence[Example]) -> Any:
        return np.array([position.get(label_of[e], -1) for e in items])

    test = list(split.test)
    return _estimate_rows(
        f"{feed} L{level} (logistic regression)",
        probs_of,
        [e for e in test if _half(e.product_id) == 0],
        [e for e in test if _half(e.product_id) == 1],
        truth_index,
    )
