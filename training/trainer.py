"""Multi-objective training: a shared trunk, masked per-objective losses, per-head optimizers.

Each example contributes loss only to the objectives it has labels for (masks). Each head has its own
optimizer, applied only on batches that carry labels for its objective, so a head's parameters are
updated by their own objective alone, momentum included. The trunk learns from both. Schedules:
``joint`` (every batch, both objectives), ``pretrain`` (rule-based only for the first epochs, then
joint) and ``interleave`` (alternate exclusive-only and rule-based-only batches).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from prodcat.training.models import EXCLUSIVE, RULE_BASED, head_variables

logger = logging.getLogger(__name__)

Schedule = Literal["joint", "pretrain", "interleave"]
Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 6
    batch_size: int = 128
    learning_rate: float = 2e-3
    rule_weight: float = 1.0
    schedule: Schedule = "joint"
    pretrain_epochs: int = 2
    seed: int = 0
    #: budget adapted to the data: at least this many updates (epochs raised up to ``max_epochs``)
    min_updates: int = 0
    max_epochs: int = 0
    #: share of the TRAINING split held out for early stopping (0 = none; never the test split)
    validation_fraction: float = 0.0
    #: epochs without a better validation accuracy before stopping; the best epoch is restored
    patience: int = 3
    #: copies of one example per exclusive class made from its name in the taxonomy
    #: (:func:`~prodcat.training.taxonomy.class_name_text`), trained on with the labelled products
    #: (0: none): every class has an example from its first label on, whatever its count
    class_name_examples: int = 0

    def epochs_for(self, n_train: int) -> int:
        """Epochs for ``n_train`` examples: ``epochs``, raised to reach ``min_updates``."""
        batches = max(1, -(-n_train // self.batch_size))
        epochs = max(self.epochs, -(-self.min_updates // batches))
        return min(epochs, self.max_epochs) if self.max_epochs > 0 else epochs

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainingData:
    """Inputs as numpy arrays per model input, and the labels of both objectives.

    ``y_exclusive`` holds class indices, -1 where an example has no exclusive label; ``y_rule`` is a
    multi-hot matrix over the rule-based nodes and ``has_rule`` says which rows carry rule labels.
    """

    features: dict[str, Array]
    y_exclusive: Array
    y_rule: Array | None = None
    has_rule: Array | None = None

    def __len__(self) -> int:
        return len(self.y_exclusive)


def _masked_mean(per_example: Any, weights: Any) -> Any:
    return tf.reduce_sum(per_example * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)


class Trainer:
    """Trains a model built by :func:`prodcat.training.models.build_model` under a schedule."""

    def __init__(self, model: keras.Model, config: TrainConfig) -> None:
        self.model = model
        self.config = config
        self.parts = head_variables(model)
        self.optimizers = {name: keras.optimizers.Adam(config.learning_rate) for name in self.parts}
        for name, variables in self.parts.items():
            if variables:
                self.optimizers[name].build(variables)
        self._steps: dict[tuple[bool, bool], Callable[..., Any]] = {}
        self.history: list[dict[str, float]] = []

    def _step(self, use_ex: bool, use_rb: bool) -> Callable[..., Any]:
        key = (use_ex, use_rb)
        if key not in self._steps:
            self._steps[key] = tf.function(self._make_step(use_ex, use_rb), reduce_retracing=True)
        return self._steps[key]

    def _make_step(self, use_ex: bool, use_rb: bool) -> Callable[..., Any]:
        rule_weight = self.config.rule_weight
        wanted = ["trunk"] + ([EXCLUSIVE] if use_ex else []) + ([RULE_BASED] if use_rb else [])
        groups = [g for g in wanted if self.parts[g]]  # logreg's trunk has no trainable weights

        def step(x: Any, y_ex: Any, w_ex: Any, y_rb: Any, w_rb: Any) -> Any:
            with tf.GradientTape() as tape:
                out = self.model(x, training=True)
                loss_ex = tf.constant(0.0)
                loss_rb = tf.constant(0.0)
                if use_ex:
                    ce = keras.losses.sparse_categorical_crossentropy(
                        tf.maximum(y_ex, 0), out[EXCLUSIVE]
                    )
                    loss_ex = _masked_mean(ce, w_ex)
                    if self.model.losses:  # weight penalties (the exclusive head's L2)
                        loss_ex = loss_ex + tf.add_n(self.model.losses)
                if use_rb:
                    bce = keras.losses.binary_crossentropy(y_rb, out[RULE_BASED])
                    loss_rb = _masked_mean(bce, w_rb)
                total = loss_ex + rule_weight * loss_rb
            variables = [v for g in groups for v in self.parts[g]]
            grads = tape.gradient(total, variables)
            start = 0
            for g in groups:
                n = len(self.parts[g])
                self.optimizers[g].apply_gradients(
                    zip(grads[start : start + n], self.parts[g], strict=True)
                )
                start += n
            return loss_ex, loss_rb

        return step

    def _batch_objectives(
        self, epoch: int, index: int, w_ex: Array, w_rb: Array
    ) -> tuple[bool, bool]:
        has_ex, has_rb = bool(w_ex.any()), bool(w_rb.any()) and RULE_BASED in self.parts
        schedule = self.config.schedule
        if schedule == "pretrain" and epoch < self.config.pretrain_epochs and has_rb:
            return False, True
        if schedule == "interleave" and has_ex and has_rb:
            return (True, False) if index % 2 == 0 else (False, True)
        return has_ex, has_rb

    def fit(
        self,
        data: TrainingData,
        *,
        progress: bool = True,
        validation: TrainingData | None = None,
    ) -> list[dict[str, float]]:
        """Trains for ``config.epochs_for(len(data))`` epochs; with ``validation`` (held out of the
        training data) stops after ``patience`` epochs without a better exclusive accuracy on it and
        restores the weights of the best epoch."""
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        n = len(data)
        n_rule = 0 if data.y_rule is None else data.y_rule.shape[1]
        y_rule = data.y_rule if data.y_rule is not None else np.zeros((n, n_rule), "float32")
        has_rule = data.has_rule if data.has_rule is not None else np.zeros(n, bool)
        epochs = cfg.epochs_for(n) + (cfg.pretrain_epochs if cfg.schedule == "pretrain" else 0)
        best: tuple[float, int, list[Any]] | None = None
        batches = (n + cfg.batch_size - 1) // cfg.batch_size
        bar = tqdm(total=epochs * batches, unit="batch", desc="train", disable=not progress)
        for epoch in range(epochs):
            started = time.perf_counter()
            order = rng.permutation(n)
            sums = np.zeros(2)
            counts = np.zeros(2)
            for index in range(batches):
                rows = order[index * cfg.batch_size : (index + 1) * cfg.batch_size]
                w_ex = (data.y_exclusive[rows] >= 0).astype("float32")
                w_rb = has_rule[rows].astype("float32")
                use_ex, use_rb = self._batch_objectives(epoch, index, w_ex, w_rb)
                if not (use_ex or use_rb):
                    bar.update(1)
                    continue
                x = {k: tf.constant(v[rows]) for k, v in data.features.items()}
                loss_ex, loss_rb = self._step(use_ex, use_rb)(
                    x,
                    tf.constant(data.y_exclusive[rows].astype("int32")),
                    tf.constant(w_ex),
                    tf.constant(y_rule[rows]),
                    tf.constant(w_rb),
                )
                sums += [float(loss_ex) if use_ex else 0.0, float(loss_rb) if use_rb else 0.0]
                counts += [use_ex, use_rb]
                bar.update(1)
            means = np.divide(sums, np.maximum(counts, 1))
            record = {
                "epoch": float(epoch),
                "loss_exclusive": float(means[0]),
                "loss_rule_based": float(means[1]),
                "seconds": time.perf_counter() - started,
            }
            stop = False
            if validation is not None and len(validation):
                score = _exclusive_accuracy(self.model, validation)
                record["val_accuracy"] = score
                if best is None or score > best[0]:
                    best = (score, epoch, [np.array(w) for w in self.model.get_weights()])
                stop = epoch - best[1] >= cfg.patience
            self.history.append(record)
            bar.set_postfix(ex=f"{means[0]:.3f}", rb=f"{means[1]:.3f}")
            logger.info("epoch %d: %s", epoch, record)
            if stop:
                break
        bar.close()
        if best is not None:
            self.model.set_weights(best[2])
            logger.info("restored epoch %d (validation accuracy %.4f)", best[1], best[0])
        return self.history


def _exclusive_accuracy(model: keras.Model, data: TrainingData) -> float:
    labelled = data.y_exclusive >= 0
    if not labelled.any():
        return 0.0
    probs = predict(model, data.features)[EXCLUSIVE]
    return float((probs.argmax(axis=1) == data.y_exclusive)[labelled].mean())


def predict(
    model: keras.Model, features: dict[str, Array], batch_size: int = 1024
) -> dict[str, Array]:
    """Model outputs for all rows, in batches (inference mode)."""
    n = len(next(iter(features.values())))
    outputs: dict[str, list[Array]] = {}
    for start in range(0, n, batch_size):
        x = {k: tf.constant(v[start : start + batch_size]) for k, v in features.items()}
        for name, value in model(x, training=False).items():
            outputs.setdefault(name, []).append(np.asarray(value))
    return {name: np.concatenate(parts) for name, parts in outputs.items()}
