"""Warm start: the next candidate begins from the served model's weights, its heads remapped.

Every exported version keeps its Keras model beside the SavedModel (``model.keras``: the trunk,
the adapted vectorisers and the heads). A version written by a taxonomy change
(:mod:`prodcat.training.model_remap`) copies its source's Keras model and records in its card the
class of each of that model's output columns (``columns``), since a merge folds two columns into
one class.

:func:`warm_model` builds the candidate from that model: the same inputs, vectorisers and trunk
(with their weights; the vocabulary is the served model's, not re-adapted), and new heads for the
candidate's classes. A head column of a class the served model had starts from that class's
column (for classes merged into one, the mean of their columns, the bias raised by the log of
their number, so the merged class keeps the probability mass of the two); a new class (a split's
children, a class first labelled) starts as a fresh model's would. Then the trainer trains it as
usual.

When: ``PRODCAT_RETRAIN__WARM_START`` — ``after_change`` (the default: when the served version
was written by a taxonomy change), ``always``, or ``never``; and only when the served model was
trained with the same model config as the candidate's.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from prodcat.core.model_store import available_versions, load_card
from prodcat.training.models import EXCLUSIVE, RULE_BASED, ModelConfig

__all__ = ["KERAS_FILE", "WARM_START_MODES", "head_columns", "warm_model", "warm_source"]

logger = logging.getLogger(__name__)

KERAS_FILE: Final = "model.keras"
WARM_START_MODES: Final = ("after_change", "always", "never")


def head_columns(card: Mapping[str, Any]) -> dict[str, list[str]]:
    """Per head, the class id of each output column of the version's Keras model."""
    columns = card.get("columns") or {}
    nodes = [n if isinstance(n, Mapping) else {"id": n} for n in card.get("rule_based_nodes") or []]
    return {
        EXCLUSIVE: list(
            columns.get(EXCLUSIVE) or [str(c["id"]) for c in card.get("classes") or []]
        ),
        RULE_BASED: list(columns.get(RULE_BASED) or [str(n["id"]) for n in nodes]),
    }


def warm_source(model_base: Path, name: str, mode: str, config: ModelConfig) -> Path | None:
    """The served version to start from, or None (see the module docstring)."""
    if mode == "never":
        return None
    versions = available_versions(model_base / name)
    if not versions:
        return None
    version_dir = model_base / name / str(versions[-1])
    if not (version_dir / KERAS_FILE).is_file():
        return None
    card = load_card(version_dir)
    if mode == "after_change" and not card.get("remapped_from"):
        return None
    if card.get("model_config") != json.loads(json.dumps(config.to_dict())):  # as the card holds it
        logger.info("warm start: v%s has another model config; training from scratch", versions[-1])
        return None
    return version_dir


def _head_weights(
    old: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]] | None,
    fresh: list[np.ndarray[Any, Any]],
    old_ids: Sequence[str],
    new_ids: Sequence[str],
    *,
    softmax: bool,
) -> tuple[list[np.ndarray[Any, Any]], int]:
    kernel, bias = (w.copy() for w in fresh)
    carried = 0
    if old is None:
        return [kernel, bias], carried
    old_kernel, old_bias = old
    for i, class_id in enumerate(new_ids):
        columns = [j for j, old_id in enumerate(old_ids) if old_id == class_id]
        if not columns:
            continue
        carried += 1
        kernel[:, i] = old_kernel[:, columns].mean(axis=1)
        bias[i] = old_bias[columns].mean() + (math.log(len(columns)) if softmax else 0.0)
    return [kernel, bias], carried


def warm_model(version_dir: Path, class_ids: Sequence[str], rule_ids: Sequence[str]) -> Any:
    """The served model of ``version_dir`` with heads for ``class_ids`` and ``rule_ids``."""
    import keras

    old = keras.models.load_model(version_dir / KERAS_FILE)
    columns = head_columns(load_card(version_dir))
    exclusive = old.get_layer(EXCLUSIVE)
    trunk = exclusive.input
    outputs = {}
    report = []
    for head, ids in ((EXCLUSIVE, class_ids), (RULE_BASED, rule_ids)):
        if not ids:
            continue
        names = {layer.name for layer in old.layers}
        template = old.get_layer(head) if head in names else None
        if template is not None:
            layer = keras.layers.Dense.from_config(
                {**template.get_config(), "units": len(ids), "name": head}
            )
        else:
            layer = keras.layers.Dense(len(ids), activation="sigmoid", name=head)
        outputs[head] = layer(trunk)
        previous = tuple(template.get_weights()) if template is not None else None
        weights, carried = _head_weights(
            previous, layer.get_weights(), columns[head], ids, softmax=head == EXCLUSIVE
        )
        layer.set_weights(weights)
        report.append(f"{head} {carried}/{len(ids)} columns carried")
    logger.info("warm start from %s: %s", version_dir, "; ".join(report))
    inputs = {tensor.name: tensor for tensor in old.inputs}  # by field name, as built
    return keras.Model(inputs=inputs, outputs=outputs, name=old.name)
