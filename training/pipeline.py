"""Train and evaluate one model on the fixed protocol, from files (no Kafka needed).

``train_on_examples`` runs the protocol on any labelled examples (``prodcat train --data``);
``train_on_protocol`` loads the demo's dataset, splits it by the protocol at level L (exclusive classes = the
protocol's labels), adds free rule-based labels from the legacy rule system for multi-objective
models, trains, and evaluates accuracy / macro-F1 per level and calibration on the test part.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np

from prodcat.training.dataset import Example, Split, demo_examples, protocol_split, tree_of_examples
from prodcat.training.evaluation import (
    accuracy,
    expected_calibration_error,
    macro_f1,
    per_class_report,
    per_level,
)
from prodcat.training.exceptions import DatasetError
from prodcat.training.models import EXCLUSIVE, TEXT_FIELDS, ModelConfig, build_model, join_texts
from prodcat.training.rules import DEMO_RULES, RuleEngine, load_rules
from prodcat.training.taxonomy import CategoryTree, class_name_text
from prodcat.training.trainer import TrainConfig, Trainer, TrainingData, predict

logger = logging.getLogger(__name__)

Array = np.ndarray[Any, Any]


def features_of(examples: Sequence[Example]) -> dict[str, Array]:
    """The model inputs of ``examples`` as string arrays (missing fields are empty strings).

    ``category_text`` is left empty: on this dataset it is the label's source.
    """
    columns: dict[str, list[str]] = {name: [] for name in TEXT_FIELDS}
    for example in examples:
        columns["title"].append(example.title)
        columns["brand"].append(example.brand or "")
        columns["category_text"].append("")
        columns["description"].append(example.description or "")
    return {name: np.array(values, dtype=object) for name, values in columns.items()}


@dataclass
class RuleLabels:
    """Rule-based targets over every node of the category tree (ancestors included)."""

    node_ids: list[str]
    node_paths: list[list[str]]
    targets: Array
    has_labels: Array

    @classmethod
    def build(
        cls, engine: RuleEngine, tree: CategoryTree, examples: Sequence[Example]
    ) -> RuleLabels:
        node_ids = sorted(node.id for node in tree)
        index = {node_id: i for i, node_id in enumerate(node_ids)}
        targets = np.zeros((len(examples), len(node_ids)), dtype="float32")
        for row, example in enumerate(examples):
            for node_id in engine.apply(example):
                if node_id in index:
                    targets[row, index[node_id]] = 1.0
        paths = [list(tree[node_id].path) for node_id in node_ids]
        return cls(node_ids, paths, targets, np.asarray(targets.any(axis=1)))


@dataclass
class ProtocolResult:
    level: int
    model_config: ModelConfig
    train_config: TrainConfig
    classes: list[str]
    accuracy: float
    macro_f1: float
    ece: float
    per_level: dict[int, dict[str, float]]
    train_seconds: float
    history: list[dict[str, float]]
    model: keras.Model
    rule_node_ids: list[str] = field(default_factory=list)
    rule_node_paths: list[list[str]] = field(default_factory=list)
    rule_coverage: float = 0.0
    per_class: list[dict[str, Any]] = field(default_factory=list)
    #: exclusive probabilities on the test part (the drift reference is built from them)
    test_probs: Array | None = None

    def metrics(self) -> dict[str, float]:
        flat = {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "ece": self.ece,
            "train_seconds": self.train_seconds,
        }
        for level, scores in self.per_level.items():
            for name, value in scores.items():
                flat[f"l{level}_{name}"] = value
        return flat


def train_on_protocol(
    data_dir: Path,
    level: int,
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    examples: Sequence[Example] | None = None,
    progress: bool = True,
) -> ProtocolResult:
    """The demo's dataset (or ``examples`` of it) with its legacy keyword rules for
    multi-objective models."""
    examples = list(examples) if examples is not None else demo_examples(data_dir)
    engine: tuple[RuleEngine, CategoryTree] | None = None
    if model_config.multi_objective:
        tree = tree_of_examples(examples)
        engine = (RuleEngine(load_rules(DEMO_RULES, tree), tree), tree)
    return train_on_examples(
        examples, level, model_config, train_config, rules=engine, progress=progress
    )


def train_on_examples(
    examples: Sequence[Example],
    level: int,
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    rules: tuple[RuleEngine, CategoryTree] | None = None,
    progress: bool = True,
) -> ProtocolResult:
    """The protocol on any labelled examples (``prodcat train --data``).

    Multi-objective models need rules (an engine and its tree); without them the model is trained
    single-objective, and its config says so."""
    if model_config.multi_objective and rules is None:
        logger.info("no rules for this data: training single-objective")
        model_config = replace(model_config, multi_objective=False)
    split = protocol_split(examples, level)
    if len(split.labels) < 2:
        raise DatasetError(
            f"L{level}: {len(split.labels)} class(es) with >= 5 products "
            f"({split.dropped_short} products have no level-{level} label): nothing to learn"
        )
    keras.utils.set_random_seed(train_config.seed)
    classes = list(split.labels)
    class_index = {label: i for i, label in enumerate(classes)}
    train, train_labels = list(split.train), list(split.train_labels)
    for label in classes if train_config.class_name_examples > 0 else ():
        name = class_name_text(label.split(" > "))
        example = Example(f"class-name:{label}", name, None, "", (), ())
        train += [example] * train_config.class_name_examples
        train_labels += [label] * train_config.class_name_examples
    train_x = features_of(train)
    rule_labels: RuleLabels | None = None
    if model_config.multi_objective and rules is not None:
        engine, tree = rules
        rule_labels = RuleLabels.build(engine, tree, train)
    model = build_model(
        model_config,
        len(classes),
        len(rule_labels.node_ids) if rule_labels else 0,
        join_texts(train_x, model_config),
    )
    data = TrainingData(
        features=train_x,
        y_exclusive=np.array([class_index[y] for y in train_labels], dtype="int64"),
        y_rule=rule_labels.targets if rule_labels else None,
        has_rule=rule_labels.has_labels if rule_labels else None,
    )
    data, validation = hold_out(data, train_config.validation_fraction, train_config.seed)
    started = time.perf_counter()
    history = Trainer(model, train_config).fit(data, progress=progress, validation=validation)
    train_seconds = time.perf_counter() - started
    return _evaluate(
        split, classes, model, model_config, train_config, history, train_seconds, rule_labels
    )


def hold_out(
    data: TrainingData, fraction: float, seed: int
) -> tuple[TrainingData, TrainingData | None]:
    """A stratified validation part of the TRAINING data (for early stopping), and the rest.

    Classes with fewer than 2 labelled rows stay whole in the training part; the test split is
    never touched."""
    if fraction <= 0:
        return data, None
    rng = np.random.default_rng(seed)
    held: list[int] = []
    for label in np.unique(data.y_exclusive):
        rows = np.flatnonzero(data.y_exclusive == label)
        take = round(len(rows) * fraction) if len(rows) >= 2 else 0
        held.extend(rng.permutation(rows)[: min(take, len(rows) - 1)].tolist())
    if not held:
        return data, None
    mask = np.zeros(len(data), bool)
    mask[held] = True

    def subset(keep: Array) -> TrainingData:
        return TrainingData(
            features={k: v[keep] for k, v in data.features.items()},
            y_exclusive=data.y_exclusive[keep],
            y_rule=None if data.y_rule is None else data.y_rule[keep],
            has_rule=None if data.has_rule is None else data.has_rule[keep],
        )

    return subset(~mask), subset(mask)


def _evaluate(
    split: Split,
    classes: list[str],
    model: keras.Model,
    model_config: ModelConfig,
    train_config: TrainConfig,
    history: list[dict[str, float]],
    train_seconds: float,
    rules: RuleLabels | None,
) -> ProtocolResult:
    probs = predict(model, features_of(split.test))[EXCLUSIVE]
    predicted = [classes[i] for i in probs.argmax(axis=1)]
    truth = list(split.test_labels)
    index = {label: i for i, label in enumerate(classes)}
    levels = per_level(truth, predicted, levels=tuple(range(1, split.level + 1)))
    return ProtocolResult(
        level=split.level,
        model_config=model_config,
        train_config=train_config,
        classes=classes,
        accuracy=accuracy(truth, predicted),
        macro_f1=macro_f1(truth, predicted),
        ece=expected_calibration_error(probs, np.array([index[t] for t in truth])),
        per_level={
            lv: {"accuracy": s.accuracy, "macro_f1": s.macro_f1} for lv, s in levels.items()
        },
        train_seconds=train_seconds,
        history=history,
        model=model,
        rule_node_ids=rules.node_ids if rules else [],
        rule_node_paths=rules.node_paths if rules else [],
        rule_coverage=float(rules.has_labels.mean()) if rules else 0.0,
        per_class=[
            {
                "label": c.label,
                "support": c.support,
                "precision": c.precision,
                "recall": c.recall,
                "f1": c.f1,
            }
            for c in per_class_report(truth, predicted)
        ],
        test_probs=probs,
    )
