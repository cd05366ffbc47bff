"""Export a trained model for TF Serving: ``<model_base>/<name>/<version>/`` plus ``models.config``.

The SavedModel's ``serving_default`` signature takes the raw product fields as strings (``title``,
``brand``, ``category_text``, ``description``: 1-D, one entry per product) and returns
``exclusive_probs`` [n, classes], ``top_k_ids`` / ``top_k_probs`` / ``top_k_indices`` [n, k] and
``rule_based_probs`` [n, nodes] (zero columns for single-objective models). The model card
(``model_card.json`` beside ``saved_model.pb``) holds the class and node ids, their paths, the
hyperparameters, the data and the metrics; ``drift_reference.json`` beside it (when the caller
has held-out predictions, which every training path has) is what the drift agent compares live
predictions with (``training.drift``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from training.drift import DriftReference
from training.exceptions import TrainingError
from training.models import EXCLUSIVE, RULE_BASED, TEXT_FIELDS

CARD = "model_card.json"
MODELS_CONFIG = "models.config"


def next_version(model_dir: Path) -> int:
    """1 + the highest numeric version directory under ``model_dir`` (TF Serving's convention)."""
    versions = [int(p.name) for p in model_dir.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


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
    model_dir = base_dir / name
    model_dir.mkdir(parents=True, exist_ok=True)
    version = version if version is not None else next_version(model_dir)
    target = model_dir / str(version)
    if target.exists():
        raise TrainingError(f"{target} exists; model versions are immutable")
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
    tmp = model_dir / f".{version}.partial"
    archive.write_out(str(tmp), verbose=False)
    full_card = {"name": name, "version": version, "exported_at": int(time.time()), **card}
    (tmp / CARD).write_text(json.dumps(full_card, indent=2, ensure_ascii=False), encoding="utf-8")
    if drift_reference is not None:
        drift_reference.write(tmp)
    tmp.rename(target)  # atomic: a watcher never sees a half-written version
    write_models_config(base_dir)
    return target


def write_models_config(base_dir: Path, serving_base: str = "/models") -> Path:
    """TF Serving's model config listing every model under ``base_dir`` (latest 2 versions)."""
    entries = []
    for model_dir in sorted(
        p
        for p in base_dir.iterdir()
        if p.is_dir() and any(v.is_dir() and v.name.isdigit() for v in p.iterdir())
    ):
        entries.append(
            "  config {\n"
            f'    name: "{model_dir.name}"\n'
            f'    base_path: "{serving_base}/{model_dir.name}"\n'
            '    model_platform: "tensorflow"\n'
            "    model_version_policy { latest { num_versions: 2 } }\n"
            "  }\n"
        )
    path = base_dir / MODELS_CONFIG
    path.write_text("model_config_list {\n" + "".join(entries) + "}\n", encoding="utf-8")
    return path


def load_card(version_dir: Path) -> dict[str, Any]:
    card: dict[str, Any] = json.loads((version_dir / CARD).read_text(encoding="utf-8"))
    return card
