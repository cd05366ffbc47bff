"""``prodcat train``: train on the fixed protocol from a YAML config, evaluate, export for serving.

The data is the demo's dataset (``DEMO_DATASET``) or, with ``--data``, any labelled file
(:mod:`prodcat.training.data_files`); either way the TF-IDF + LinearSVC baseline runs on the same
split, so its figures can be printed next to the model's (:func:`side_by_side`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from prodcat.core.ids import path_id
from prodcat.training.baseline import BaselineResult, tfidf_linearsvc
from prodcat.training.data_files import LabelledData
from prodcat.training.dataset import (
    DEMO_DATASET,
    DEMO_FILE,
    demo_examples,
    protocol_split,
    protocol_summary,
)
from prodcat.training.drift import build_reference
from prodcat.training.evaluation import ComparisonRow, comparison_table
from prodcat.training.exceptions import TrainingError
from prodcat.training.export import export_model
from prodcat.training.models import ModelConfig
from prodcat.training.pipeline import ProtocolResult, train_on_examples, train_on_protocol
from prodcat.training.trainer import TrainConfig

logger = logging.getLogger(__name__)

#: the default config of ``prodcat train --data``: best across the development feeds (docs/models.md)
DATA_CONFIG = Path(__file__).parent / "configs" / "linear.yaml"


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig
    training: TrainConfig
    source: str

    @classmethod
    def load(cls, path: Path, **overrides: Any) -> RunConfig:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            model = ModelConfig.from_dict({**raw.get("model", {}), **overrides.get("model", {})})
            training = TrainConfig(**{**raw.get("training", {}), **overrides.get("training", {})})
        except (OSError, yaml.YAMLError, TypeError, ValueError) as exc:
            raise TrainingError(f"invalid training config {path}: {exc}") from exc
        return cls(model, training, str(path))


def model_card(
    result: ProtocolResult,
    run: RunConfig,
    data_dir: Path | None = None,
    *,
    data: LabelledData | None = None,
) -> dict[str, Any]:
    withheld = ("category_text", *(data.withheld if data is not None else ()))
    if data is not None:
        source = data.describe()
    else:
        source = {"dataset": str(Path(data_dir or ".") / DEMO_FILE), "kind": DEMO_DATASET}
    return {
        "model_config": result.model_config.to_dict(),
        "train_config": result.train_config.to_dict(),
        "config_file": run.source,
        "data": {
            **source,
            "protocol": "path truncated to level L, normalised; classes < 5 dropped; "
            "stratified 80/20, seed 0",
            "level": result.level,
            "rule_coverage": result.rule_coverage,
        },
        "metrics": result.metrics(),
        "history": result.history,
        "per_class": result.per_class,
        "classes": [{"id": path_id(label.split(" > ")), "path": label} for label in result.classes],
        "rule_based_nodes": [
            {"id": node_id, "path": " > ".join(path)}
            for node_id, path in zip(result.rule_node_ids, result.rule_node_paths, strict=True)
        ],
        "inputs": ["title", "brand", "category_text", "description"],
        "inputs_used": [f for f in result.model_config.fields if f not in withheld],
    }


def train_and_export(
    config_path: Path,
    data_dir: Path,
    model_base: Path,
    name: str,
    level: int,
    *,
    data: LabelledData | None = None,
) -> tuple[ProtocolResult, Path]:
    """Train on the demo's dataset (or ``data``) at ``level``, export the model with its card."""
    run = RunConfig.load(config_path)
    if data is None:
        result = train_on_protocol(data_dir, level, run.model, run.training)
    else:
        result = train_on_examples(data.examples, level, run.model, run.training)
    class_ids = [path_id(label.split(" > ")) for label in result.classes]
    reference = None
    if result.test_probs is not None and len(result.test_probs):
        reference = build_reference(result.test_probs, class_ids, source="protocol test split")
    target = export_model(
        result.model,
        base_dir=model_base,
        name=name,
        class_ids=class_ids,
        card=model_card(result, run, data_dir, data=data),
        drift_reference=reference,
    )
    return result, target


def side_by_side(result: ProtocolResult, baseline: BaselineResult, family: str) -> str:
    """The model's and the baseline's accuracy and macro-F1 on the same split (Markdown)."""
    return "\n".join(
        [
            "| level | model | accuracy | macro-F1 |",
            "|---|---|---:|---:|",
            f"| L{result.level} | {family} | {result.accuracy:.4f} | {result.macro_f1:.4f} |",
            f"| L{baseline.level} | TF-IDF + LinearSVC (baseline) | {baseline.accuracy:.4f} | "
            f"{baseline.macro_f1:.4f} |",
        ]
    )


def baseline_for(data: LabelledData, level: int) -> tuple[BaselineResult, str]:
    """The baseline on ``data``'s protocol split at ``level``, and the split's sizes as text."""
    split = protocol_split(data.examples, level)
    return tfidf_linearsvc(split), protocol_summary(split).format()


def compare(
    config_paths: list[Path],
    data_dir: Path,
    levels: list[int],
    both_objectives: bool = True,
    *,
    data: LabelledData | None = None,
) -> str:
    """The comparison table: every config (single and multi-objective) plus the baseline.

    With ``data`` (no rules for it) each config runs single-objective only."""
    examples = list(data.examples) if data is not None else demo_examples(data_dir)
    if data is not None:
        both_objectives = False
    rows: list[ComparisonRow] = []
    for level in levels:
        base = tfidf_linearsvc(protocol_split(examples, level))
        rows.append(
            ComparisonRow(
                "TF-IDF + LinearSVC (baseline)",
                "single",
                level,
                base.accuracy,
                base.macro_f1,
                None,
                base.seconds,
            )
        )
        for path in config_paths:
            run = RunConfig.load(path)
            variants = [True, False] if both_objectives else [run.model.multi_objective]
            for multi in variants:
                model = ModelConfig.from_dict({**run.model.to_dict(), "multi_objective": multi})
                if data is None:
                    result = train_on_protocol(
                        data_dir, level, model, run.training, examples=examples, progress=False
                    )
                else:
                    result = train_on_examples(examples, level, model, run.training, progress=False)
                rows.append(
                    ComparisonRow(
                        model.family,
                        "multi" if result.model_config.multi_objective else "single",
                        level,
                        result.accuracy,
                        result.macro_f1,
                        result.ece,
                        result.train_seconds,
                    )
                )
                logger.info("%s", rows[-1])
    return comparison_table(rows)
