"""One retraining run on a labels snapshot: split, train, evaluate, gate, export (no Kafka here).

* **Holdout** (fixed): a holdout file (``RetrainSettings.holdout``, snapshot lines) when set, else
  the labelled products whose id hash falls under ``holdout_fraction`` (:func:`in_holdout`). Either
  way a product is always or never in the holdout, whatever else gets labelled, and holdout
  products are never trained on. Only exclusive labels are scored.
* **Candidate**: the exclusive classes are the distinct exclusive ids of the training labels (so a
  tree node labelled for the first time becomes a class); the rule-based head covers the
  vocabulary's nodes and is trained only when the snapshot has rule-based labels (positives plus
  their ancestors). The model is built from the run config (``RetrainSettings.config``), trained,
  and exported under ``<work_dir>/candidates/<name>/<version>/`` with its card and its drift
  reference (its predictions on the holdout, or on the training products when the holdout is
  empty; ``prodcat.training.drift``).
* **Gate**: the candidate's holdout accuracy against the newest serving version's, both computed
  the same way from the exported SavedModels (:func:`holdout_metrics`). Promote unless the
  candidate is worse by more than ``epsilon``; with no serving model it is promoted.
* **Promotion** copies the candidate into the model store as ``.<version>.partial`` and renames
  it, so the serving backends, which poll the store, never see half a model.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prodcat.core.model_store import (
    CARD,
    ClassifierCard,
    available_versions,
    next_version,
    write_models_config,
)
from prodcat.training.calibration import estimated_accuracy, fit_temperature
from prodcat.training.decisions import DecisionModel, fit_thresholds
from prodcat.training.drift import DriftReference, build_reference
from prodcat.training.evaluation import accuracy, macro_f1
from prodcat.training.exceptions import TrainingError
from prodcat.training.export import export_model
from prodcat.training.inputs import model_inputs
from prodcat.training.labels import LabelledProduct, Vocabulary, in_holdout
from prodcat.training.models import EXCLUSIVE, ModelConfig, build_model, join_texts
from prodcat.training.taxonomy import class_name_text
from prodcat.training.train_command import RunConfig
from prodcat.training.trainer import Trainer, TrainingData, predict
from prodcat.training.warm_start import warm_model, warm_source

logger = logging.getLogger(__name__)

#: Fewest exclusive classes (and training labels) a candidate is trained on.
MIN_CLASSES = 2
EventSink = Callable[..., None]


@dataclass(frozen=True)
class RetrainData:
    train: list[LabelledProduct]
    holdout: list[LabelledProduct]


def split_holdout(
    items: Sequence[LabelledProduct],
    fraction: float,
    fixed: Sequence[LabelledProduct] | None = None,
) -> RetrainData:
    """Training and holdout parts (see the module docstring); holdout rows have an exclusive id."""
    if fixed is not None:
        held = {item.product_id for item in fixed}
        holdout = [item for item in fixed if item.exclusive]
    else:
        held = {item.product_id for item in items if in_holdout(item.product_id, fraction)}
        holdout = [item for item in items if item.product_id in held and item.exclusive]
    return RetrainData([item for item in items if item.product_id not in held], holdout)


def features(items: Sequence[LabelledProduct]) -> dict[str, np.ndarray[Any, Any]]:
    """The classifier's raw inputs, exactly as the classify agent builds them."""

    return model_inputs([item.product for item in items])


@dataclass
class Candidate:
    model: Any
    class_ids: list[str]
    rule_ids: list[str]
    card: dict[str, Any]
    train_seconds: float


def train_candidate(
    items: Sequence[LabelledProduct],
    vocabulary: Vocabulary,
    run: RunConfig,
    warm: tuple[Path, str, str] | None = None,
) -> Candidate:
    """Train a model on the labelled products (exclusive and rule-based labels). ``warm``:
    (model base, name, ``PRODCAT_RETRAIN__WARM_START`` mode): start from the served model's
    weights when the mode says so (:mod:`prodcat.training.warm_start`)."""
    import keras

    class_ids = sorted({item.exclusive for item in items if item.exclusive})
    if len(class_ids) < MIN_CLASSES:
        raise TrainingError(
            f"cannot train: {len(class_ids)} exclusive class(es) in {len(items)} training "
            f"products, need at least {MIN_CLASSES}"
        )
    names = class_name_items(class_ids, vocabulary, run.training.class_name_examples)
    labelled, items = items, [*items, *names]
    has_rules = any(item.rule_based for item in items)
    rule_ids = sorted(vocabulary.nodes) if has_rules and run.model.multi_objective else []
    if has_rules and not rule_ids and run.model.multi_objective:
        rule_ids = sorted({node for item in items for node in item.rule_based})
    model_config = ModelConfig.from_dict({**run.model.to_dict(), "multi_objective": bool(rule_ids)})
    keras.utils.set_random_seed(run.training.seed)
    x = features(items)
    class_index = {c: i for i, c in enumerate(class_ids)}
    node_index = {n: i for i, n in enumerate(rule_ids)}
    y_rule = np.zeros((len(items), len(rule_ids)), dtype="float32")
    for row, item in enumerate(items):
        for node in vocabulary.with_ancestors(item.rule_based) if rule_ids else ():
            if node in node_index:
                y_rule[row, node_index[node]] = 1.0
    data = TrainingData(
        features=x,
        y_exclusive=np.array([class_index.get(item.exclusive or "", -1) for item in items]),
        y_rule=y_rule if rule_ids else None,
        has_rule=np.asarray(y_rule.any(axis=1)) if rule_ids else None,
    )
    source = warm_source(*warm, model_config) if warm is not None else None
    if source is not None:
        model = warm_model(source, class_ids, rule_ids)
    else:
        model = build_model(
            model_config, len(class_ids), len(rule_ids), join_texts(x, model_config)
        )
    started = time.perf_counter()
    history = Trainer(model, run.training).fit(data, progress=False)
    seconds = time.perf_counter() - started
    card = {
        "model_config": model_config.to_dict(),
        "train_config": run.training.to_dict(),
        "config_file": run.source,
        "data": {
            "source": "labels snapshot",
            "train_products": len(labelled),
            "class_name_examples": len(names),
            "exclusive_labels": int((data.y_exclusive >= 0).sum()) - len(names),
            "rule_based_labels": int(y_rule.any(axis=1).sum()) if rule_ids else 0,
            "vocabulary_version": vocabulary.version,
        },
        "history": history,
        "classes": [{"id": c, "path": vocabulary.path(c)} for c in class_ids],
        "rule_based_nodes": [{"id": n, "path": vocabulary.path(n)} for n in rule_ids],
        "inputs": ["title", "brand", "category_text", "description"],
    }
    if source is not None:
        card["warm_start"] = {"from_version": int(source.name)}
    return Candidate(model, class_ids, rule_ids, card, seconds)


def class_name_items(
    class_ids: Sequence[str], vocabulary: Vocabulary, copies: int
) -> list[LabelledProduct]:
    """``copies`` examples of each class whose path the vocabulary knows, titled by its name in the
    taxonomy (:func:`~prodcat.training.taxonomy.class_name_text`)."""
    items: list[LabelledProduct] = []
    for class_id in class_ids if copies > 0 else ():
        levels = vocabulary.levels(class_id)
        if levels:
            product = {"product_id": f"class-name:{class_id}", "title": class_name_text(levels)}
            items += [LabelledProduct(product, class_id)] * copies
    return items


def drift_reference(
    candidate: Candidate, data: RetrainData, batch_size: int = 1024
) -> DriftReference:
    """What the candidate predicts on held-out products (training ones if none are held out)."""
    rows, source = (data.holdout, "retrain holdout") if data.holdout else (data.train, "train")
    probs = predict(candidate.model, features(rows), batch_size)[EXCLUSIVE]
    return build_reference(probs, candidate.class_ids, source)


def _holdout_outputs(
    version_dir: Path, holdout: Sequence[LabelledProduct]
) -> tuple[list[str], np.ndarray[Any, Any]]:
    """An exported version's top-1 class ids and exclusive probabilities on the holdout."""
    import tensorflow as tf

    try:
        function = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    except (OSError, ValueError, KeyError, tf.errors.OpError) as exc:
        raise TrainingError(f"cannot load {version_dir} for evaluation: {exc}") from exc
    predicted: list[str] = []
    probs: list[np.ndarray[Any, Any]] = []
    for start in range(0, len(holdout), 512):
        inputs = features(holdout[start : start + 512])
        out = function(**{k: tf.constant(v) for k, v in inputs.items()})
        predicted.extend(v.decode() for v in out["top_k_ids"].numpy()[:, 0])
        probs.append(out["exclusive_probs"].numpy())
    return predicted, np.concatenate(probs)


#: The fewest held-out products thresholds are chosen from; with fewer the card gets none.
MIN_DECISION_HOLDOUT = 50


def holdout_card_entries(
    card: ClassifierCard,
    outputs: tuple[list[str], np.ndarray[Any, Any]] | None,
    holdout: Sequence[LabelledProduct],
    vocabulary: Vocabulary,
    precision_target: float | None,
) -> dict[str, Any]:
    """What the holdout teaches a candidate's card (``outputs``: its :func:`_holdout_outputs` on
    ``holdout``), with at least MIN_DECISION_HOLDOUT products (else nothing): ``calibration``
    (the temperature that calibrates its confidences, :mod:`prodcat.training.calibration`) and,
    with ``precision_target``, ``decisions`` (per-node thresholds,
    :mod:`prodcat.training.decisions`). Holdout products all have an exclusive label
    (:func:`split_holdout`)."""
    rows = list(holdout)
    if outputs is None or len(rows) < MIN_DECISION_HOLDOUT:
        return {}
    predicted, probs = outputs
    index = {cid: i for i, cid in enumerate(card.class_ids)}
    truth_ids = np.array([index.get(item.exclusive or "", -1) for item in rows])
    temperature = fit_temperature(probs, truth_ids)
    entries: dict[str, Any] = {
        "calibration": {
            "temperature": temperature,
            "holdout_size": len(rows),
            "holdout_accuracy": accuracy([item.exclusive or "" for item in rows], predicted),
            "estimated_accuracy": estimated_accuracy(probs, temperature),
        }
    }
    if precision_target is not None:
        truth = [
            tuple(level.strip() for level in vocabulary.path(item.exclusive or "").split(" > "))
            for item in rows
        ]
        plain = DecisionModel(card.class_ids, card.class_paths)
        fitted = fit_thresholds(plain, probs, truth, target=precision_target)
        entries["decisions"] = {**fitted.to_card(), "holdout_size": len(rows)}
    return entries


def holdout_metrics(version_dir: Path, holdout: Sequence[LabelledProduct]) -> dict[str, float]:
    """Accuracy and macro-F1 of an exported version's top-1 class id on the holdout."""
    if not holdout:
        return {"holdout_size": 0.0}
    predicted, _ = _holdout_outputs(version_dir, holdout)
    return _scored(predicted, holdout)


def _scored(predicted: Sequence[str], holdout: Sequence[LabelledProduct]) -> dict[str, float]:
    truth = [item.exclusive or "" for item in holdout]
    return {
        "holdout_accuracy": accuracy(truth, predicted),
        "holdout_macro_f1": macro_f1(truth, predicted),
        "holdout_size": float(len(holdout)),
    }


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str


def gate(
    candidate: dict[str, float], serving: dict[str, float] | None, epsilon: float
) -> GateDecision:
    """Promote unless the candidate's holdout accuracy is below the serving one's minus epsilon."""
    if serving is None:
        return GateDecision(True, "no serving model")
    if not candidate.get("holdout_size"):
        return GateDecision(False, "empty holdout: nothing to compare the models on")
    new, old = candidate["holdout_accuracy"], serving["holdout_accuracy"]
    verdict = f"holdout accuracy {new:.4f} vs serving {old:.4f} (epsilon {epsilon:g})"
    if new < old - epsilon:
        return GateDecision(False, f"worse than serving: {verdict}")
    return GateDecision(True, f"not worse than serving: {verdict}")


def promote(candidate_dir: Path, model_base: Path, name: str) -> Path:
    """Copy a candidate into the model store atomically; returns the serving version directory."""
    model_dir = model_base / name
    model_dir.mkdir(parents=True, exist_ok=True)
    version = int(candidate_dir.name)
    # A private staging folder, then one rename that fails if the version exists (a version
    # exported by hand meanwhile, or another promotion that won): then the next free number.
    tmp = model_dir / f".{version}.{uuid.uuid4().hex[:8]}.partial"
    shutil.copytree(candidate_dir, tmp)
    try:
        for _ in range(100):
            target = model_dir / str(version)
            if not target.exists():
                card = json.loads((tmp / CARD).read_text(encoding="utf-8"))
                card["version"] = version
                (tmp / CARD).write_text(
                    json.dumps(card, indent=2, ensure_ascii=False), encoding="utf-8"
                )
                try:
                    os.rename(tmp, target)  # atomic; refuses a non-empty existing folder
                except OSError as exc:
                    if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
                else:
                    write_models_config(model_base)
                    return target
            version = max(version + 1, next_version(model_dir))
        raise TrainingError(f"no free version in {model_dir} after 100 tries")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class RetrainResult:
    """What a run decided, for the job's result file and the trigger's metrics."""

    version: int
    outcome: str  # promoted | rejected
    reason: str
    metrics: dict[str, float] = field(default_factory=dict)
    baseline_version: int | None = None
    artifact: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "outcome": self.outcome,
            "reason": self.reason,
            "metrics": self.metrics,
            "baseline_version": self.baseline_version,
            "artifact": self.artifact,
        }


def retrain(
    items: Sequence[LabelledProduct],
    *,
    vocabulary: Vocabulary,
    run: RunConfig,
    model_base: Path,
    name: str,
    work_dir: Path,
    version: int,
    epsilon: float,
    holdout_fraction: float,
    fixed_holdout: Sequence[LabelledProduct] | None,
    emit: EventSink,
    alternatives: Sequence[RunConfig] = (),
    precision_target: float | None = None,
    warm_start: str = "after_change",
) -> RetrainResult:
    """Train, evaluate and gate one candidate; ``emit(event, **fields)`` reports each step.

    With ``alternatives`` (other run configs, e.g. a linear model beside the CNN), every config is
    trained and the candidate is the one with the best holdout accuracy (the first config on a
    tie or without a holdout); the card's ``chosen_from`` lists every option's holdout metrics.
    ``precision_target``: the candidate's card gets per-node thresholds for it, chosen on the
    holdout (``decisions``), so its predictions carry the deepest category that meets it; the
    card also gets the temperature that calibrates its confidences (``calibration``).
    ``warm_start``: when a candidate starts from the served model's weights (``after_change``,
    ``always``, ``never``; :mod:`prodcat.training.warm_start`)."""
    data = split_holdout(items, holdout_fraction, fixed_holdout)
    logger.info(
        "retrain v%d: %d training, %d holdout products", version, len(data.train), len(data.holdout)
    )
    options: list[_Option] = []
    failure: TrainingError | None = None
    for index, option_run in enumerate([run, *alternatives]):
        try:
            candidate = train_candidate(
                data.train, vocabulary, option_run, (model_base, name, warm_start)
            )
        except TrainingError as exc:
            logger.warning("retrain v%d: %s: %s", version, option_run.source, exc)
            failure = failure or exc
            continue
        base_dir = work_dir / "candidates"
        if alternatives:  # one folder per option; the chosen one is moved to candidates/
            base_dir = work_dir / "options" / f"v{version}" / str(index)
        option_dir = export_model(
            candidate.model,
            base_dir=base_dir,
            name=name,
            class_ids=candidate.class_ids,
            card=candidate.card,
            version=version,
            drift_reference=drift_reference(candidate, data),
        )
        # The exported model on the holdout, once: it scores the option and, if chosen, teaches
        # its card the calibration and the back-off thresholds.
        outputs = _holdout_outputs(option_dir, data.holdout) if data.holdout else None
        metrics = _scored(outputs[0], data.holdout) if outputs else {"holdout_size": 0.0}
        options.append(_Option(option_run, candidate, option_dir, metrics, outputs))
    if not options:
        assert failure is not None
        emit("rejected", version=version, reason=str(failure))
        return RetrainResult(version, "rejected", str(failure))
    chosen = choose(options)
    candidate, candidate_dir, cand = chosen.candidate, chosen.directory, chosen.metrics
    if alternatives:
        # Where a single candidate is exported (and where free_version looks).
        candidate_dir = work_dir / "candidates" / name / str(version)
        candidate_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(chosen.directory, candidate_dir)
        shutil.rmtree(work_dir / "options" / f"v{version}", ignore_errors=True)
        logger.info(
            "retrain v%d: chose %s (%s)",
            version,
            chosen.run.source,
            ", ".join(
                f"{o.run.source}: {o.metrics.get('holdout_accuracy', float('nan')):.4f}"
                for o in options
            ),
        )
        _record_choice(candidate_dir, options, chosen)
    card = ClassifierCard.from_dict({"name": name, "version": version, **candidate.card})
    for key, value in holdout_card_entries(
        card, chosen.outputs, data.holdout, vocabulary, precision_target
    ).items():
        _set_card(candidate_dir, key, value)
    train_metrics = {
        "train_seconds": sum(o.candidate.train_seconds for o in options),
        "train_products": float(len(data.train)),
        "classes": float(len(candidate.class_ids)),
        "options": float(len(options)),
    }
    emit("trained", version=version, metrics=train_metrics, artifact_uri=str(candidate_dir))
    serving = available_versions(model_base / name)
    baseline = serving[-1] if serving else None
    base = holdout_metrics(model_base / name / str(baseline), data.holdout) if baseline else None
    metrics = {**train_metrics, **cand}
    if base is not None:
        metrics.update({f"serving_{k}": v for k, v in base.items() if k != "holdout_size"})
    _update_card(candidate_dir, metrics)
    emit(
        "evaluated",
        version=version,
        metrics=metrics,
        baseline_version=baseline,
        artifact_uri=str(candidate_dir),
    )
    decision = gate(cand, base, epsilon)
    logger.info("retrain v%d: %s", version, decision.reason)
    if not decision.promote:
        emit(
            "rejected",
            version=version,
            metrics=metrics,
            baseline_version=baseline,
            reason=decision.reason,
            artifact_uri=str(candidate_dir),
        )
        return RetrainResult(
            version, "rejected", decision.reason, metrics, baseline, str(candidate_dir)
        )
    target = promote(candidate_dir, model_base, name)
    shutil.rmtree(candidate_dir, ignore_errors=True)  # the store holds it now
    served = int(target.name)
    emit(
        "promoted",
        version=served,
        metrics=metrics,
        baseline_version=baseline,
        reason=decision.reason,
        artifact_uri=str(target),
    )
    return RetrainResult(served, "promoted", decision.reason, metrics, baseline, str(target))


@dataclass
class _Option:
    """One trained config of a run: its candidate, where it was exported, its holdout metrics
    and outputs."""

    run: RunConfig
    candidate: Candidate
    directory: Path
    metrics: dict[str, float]
    outputs: tuple[list[str], np.ndarray[Any, Any]] | None = None  # on the holdout


def choose(options: Sequence[_Option]) -> _Option:
    """The option with the best holdout accuracy; the earliest on a tie (or without a holdout)."""
    return max(options, key=lambda option: option.metrics.get("holdout_accuracy", 0.0))


def _record_choice(version_dir: Path, options: Sequence[_Option], chosen: _Option) -> None:
    path = version_dir / CARD
    card = json.loads(path.read_text(encoding="utf-8"))
    card["chosen_from"] = [
        {
            "config_file": option.run.source,
            "family": option.run.model.family,
            "chosen": option is chosen,
            "train_seconds": option.candidate.train_seconds,
            **option.metrics,
        }
        for option in options
    ]
    path.write_text(json.dumps(card, indent=2, ensure_ascii=False), encoding="utf-8")


def _set_card(version_dir: Path, key: str, value: Any) -> None:
    path = version_dir / CARD
    card = json.loads(path.read_text(encoding="utf-8"))
    card[key] = value
    path.write_text(json.dumps(card, indent=2, ensure_ascii=False), encoding="utf-8")


def _update_card(version_dir: Path, metrics: dict[str, float]) -> None:
    path = version_dir / CARD
    card = json.loads(path.read_text(encoding="utf-8"))
    card["metrics"] = metrics
    path.write_text(json.dumps(card, indent=2, ensure_ascii=False), encoding="utf-8")
