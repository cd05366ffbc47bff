"""`prodcat train`: configs, schedules, and one real run on the protocol exported for serving."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf

from prodcat.core.model_store import load_card
from prodcat.training.drift import DriftReference
from prodcat.training.exceptions import TrainingError
from prodcat.training.models import ModelConfig
from prodcat.training.train_command import RunConfig, train_and_export
from prodcat.training.trainer import TrainConfig, Trainer

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "training" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_configs_load(path: Path) -> None:
    run = RunConfig.load(path)
    assert run.model.family == path.stem
    assert run.training.epochs >= 1


def test_a_bad_config_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {family: ffn}\ntraining: {epochz: 3}\n")
    with pytest.raises(TrainingError, match=r"bad\.yaml"):
        RunConfig.load(bad)


class _Stub:
    parts = {"trunk": [], "exclusive": [], "rule_based": []}


@pytest.mark.parametrize(
    ("schedule", "epoch", "index", "expected"),
    [
        ("joint", 0, 0, (True, True)),
        ("pretrain", 0, 3, (False, True)),
        ("pretrain", 2, 3, (True, True)),
        ("interleave", 5, 0, (True, False)),
        ("interleave", 5, 1, (False, True)),
    ],
)
def test_schedules_pick_the_objectives_of_a_batch(
    schedule: str, epoch: int, index: int, expected: tuple[bool, bool]
) -> None:
    trainer = object.__new__(Trainer)
    trainer.config = TrainConfig(schedule=schedule, pretrain_epochs=2)  # type: ignore[arg-type]
    trainer.parts = _Stub.parts  # type: ignore[assignment]
    both = np.ones(4, "float32")
    assert trainer._batch_objectives(epoch, index, both, both) == expected
    # Without rule labels every schedule falls back to the exclusive objective alone.
    assert trainer._batch_objectives(epoch, index, both, np.zeros(4, "float32")) == (True, False)


@pytest.mark.slow
def test_train_on_the_protocol_and_serve_the_export(tmp_path: Path, data_dir: Path) -> None:
    config = tmp_path / "quick.yaml"
    config.write_text(  # 10,000 terms: level 3 at 0.92 in ~50 s (the default 60,000: ~120 s)
        "model: {family: logreg, multi_objective: true, max_tokens: 10000}\n"
        "training: {epochs: 2, batch_size: 256}\n"
    )
    result, target = train_and_export(config, data_dir, tmp_path / "models", "classifier", 3)
    assert result.accuracy > 0.90, result.accuracy
    card = load_card(target)
    assert card["model_config"]["family"] == "logreg"
    assert card["train_config"]["epochs"] == 2
    assert len(card["classes"]) == 253 and card["metrics"]["accuracy"] == result.accuracy
    assert ModelConfig.from_dict(card["model_config"]).multi_objective
    # The drift reference: the model's top-1 predictions on the protocol's test split.
    reference = DriftReference.read(target)
    assert reference.source == "protocol test split" and reference.size > 3000
    assert set(reference.categories) == {c["id"] for c in card["classes"]}
    assert sum(reference.confidence) == reference.size

    serve = tf.saved_model.load(str(target)).signatures["serving_default"]
    out = serve(
        title=tf.constant(["Sonata Analog Watch - For Men", "Alisha Solid Women's Cycling Shorts"]),
        brand=tf.constant(["Sonata", "Alisha"]),
        category_text=tf.constant(["", ""]),
        description=tf.constant(["", ""]),
    )
    ids = {c["id"]: c["path"] for c in card["classes"]}
    top = [ids[i.decode()] for i in out["top_k_ids"].numpy()[:, 0]]
    assert top[0].startswith("watches") and top[1].startswith("clothing")
    assert out["rule_based_probs"].shape[1] == len(card["rule_based_nodes"])
