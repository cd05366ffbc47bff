"""Export a trained model for TF Serving: ``<model_base>/<name>/<version>/`` plus ``models.config``.

The SavedModel's ``serving_default`` signature takes the raw product fields as strings (``title``,
``brand``, ``category_text``, ``description``: 1-D, one entry per product) and returns
``exclusive_probs`` [n, classes], ``top_k_ids`` / ``top_k_probs`` / ``top_k_indices`` [n, k] and
``rule_based_probs`` [n, nodes] (zero columns for single-objective models). The model card
(``model_card.json`` beside ``saved_model.pb``) holds the class and node ids, their paths, the
hyperparameters, the data and the metrics; ``drift_reference.json`` beside it (when the caller
has held-out predictions, which every training path has) is what the drift agent compares live
predictions with (``prodcat.training.drift``); ``model.keras`` is the Keras model itself, what a
later training may warm-start from (``prodcat.training.warm_start``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from prodcat.core.errors import ModelStoreError
from prodcat.core.model_store import export_version
from prodcat.training.drift import DriftReference
from prodcat.training.exceptions import TrainingError
from prodcat.training.models import EXCLUSIVE, RULE_BASED, TEXT_FIELDS
from prodcat.training.warm_start import KERAS_FILE


def export_model(
    model: keras.Model,
    *,
    base_dir: Path,
    name: str,
    class_ids: Sequence[str],
    card: Mapping[str, Any],
    version: int | None = None,
    top_k: int = 5,
    drift_reference: DriftReference | None = None,
) -> Path:
    """Write the SavedModel, its card and its drift reference; returns the version directory.
    Never overwrites."""
    k = min(top_k, len(class_ids))
    ids = tf.constant(list(class_ids))
    has_rule_head = RULE_BASED in model.output_names

    def serve(title: Any, brand: Any, category_text: Any, description: Any) -> dict[str, Any]:
        inputs = {
            "title": title,
            "brand": brand,
            "category_text": category_text,
            "description": description,
        }
        outputs = model(inputs, training=False)
        probs = outputs[EXCLUSIVE]
        top = tf.math.top_k(probs, k=k)
        rule = outputs[RULE_BASED] if has_rule_head else tf.zeros([tf.shape(probs)[0], 0])
        return {
            "exclusive_probs": probs,
            "top_k_ids": tf.gather(ids, top.indices),
            "top_k_probs": top.values,
            "top_k_indices": top.indices,
            "rule_based_probs": rule,
        }

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serving_default",
        fn=serve,
        input_signature=[tf.TensorSpec([None], tf.string, name=f) for f in TEXT_FIELDS],
    )

    def write(tmp: Path) -> None:
        archive.write_out(str(tmp), verbose=False)
        model.save(tmp / KERAS_FILE)  # what the next training may warm-start from
        if drift_reference is not None:
            drift_reference.write(tmp)

    try:
        return export_version(base_dir, name, write, card, version=version)
    except ModelStoreError as exc:
        raise TrainingError(str(exc)) from exc
