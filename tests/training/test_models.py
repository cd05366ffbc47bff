"""Model zoo, masked multi-objective training and TF Serving export, on a tiny synthetic catalogue."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
import tensorflow as tf

from prodcat.core.model_store import load_card
from prodcat.training.export import export_model
from prodcat.training.models import (
    EXCLUSIVE,
    FAMILIES,
    RULE_BASED,
    ModelConfig,
    build_model,
    join_texts,
)
from prodcat.training.pipeline import hold_out
from prodcat.training.trainer import TrainConfig, Trainer, TrainingData, predict

WORDS = {0: "shirt cotton collar", 1: "necklace gold pendant", 2: "sneaker running sole"}


def _catalogue(n: int = 90, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    titles = [
        f"{WORDS[int(c)]} {rng.choice(['blue', 'red', 'big'])} item{i}" for i, c in enumerate(y)
    ]
    features = {
        "title": np.array(titles, dtype=object),
        "brand": np.array(["acme"] * n, dtype=object),
        "category_text": np.array([""] * n, dtype=object),
        "description": np.array([""] * n, dtype=object),
    }
    rule = np.zeros((n, 4), dtype="float32")
    rule[np.arange(n), y] = 1.0  # node per class
    rule[:, 3] = 1.0  # a shared ancestor
    return features, y.astype("int64"), rule


def _model(family: str = "ffn", multi: bool = True):  # type: ignore[no-untyped-def]
    features, _, _ = _catalogue()
    config = ModelConfig(
        family=family,
        max_tokens=300,
        hidden=16,
        embedding_dim=8,  # type: ignore[arg-type]
        conv_filters=4,
        gru_units=4,
        sequence_length=8,
        multi_objective=multi,
    )
    return build_model(config, 3, 4 if multi else 0, join_texts(features, config)), config


def _weights(model, layer: str) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    return [
        keras.ops.convert_to_numpy(v).copy() for v in model.get_layer(layer).trainable_variables
    ]


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_a_head_does_not_move_on_batches_without_its_labels() -> None:
    model, _ = _model()
    features, y, rule = _catalogue()
    trainer = Trainer(model, TrainConfig(epochs=2, batch_size=30))
    # Build up optimizer momentum on both heads first.
    trainer.fit(TrainingData(features, y, rule, np.ones(len(y), bool)), progress=False)

    ex_before, rb_before = _weights(model, EXCLUSIVE), _weights(model, RULE_BASED)
    trunk_before = _weights(model, "hidden")
    no_exclusive = TrainingData(features, np.full(len(y), -1), rule, np.ones(len(y), bool))
    Trainer.fit(trainer, no_exclusive, progress=False)
    assert _same(ex_before, _weights(model, EXCLUSIVE)), "exclusive head moved without labels"
    assert not _same(rb_before, _weights(model, RULE_BASED))
    assert not _same(trunk_before, _weights(model, "hidden"))

    rb_before, ex_before = _weights(model, RULE_BASED), _weights(model, EXCLUSIVE)
    no_rules = TrainingData(features, y, rule, np.zeros(len(y), bool))
    trainer.fit(no_rules, progress=False)
    assert _same(rb_before, _weights(model, RULE_BASED)), "rule head moved without labels"
    assert not _same(ex_before, _weights(model, EXCLUSIVE))


def test_masked_examples_contribute_no_loss() -> None:
    """Within a mixed batch, unlabelled rows must not change the exclusive loss."""
    model, _ = _model("logreg")  # no dropout: training and inference forward passes agree
    features, y, rule = _catalogue(n=20)
    trainer = Trainer(model, TrainConfig())
    step = trainer._step(True, False)
    x = {k: tf.constant(v) for k, v in features.items()}
    w = np.ones(20, "float32")
    w_half = w.copy()
    w_half[10:] = 0
    y_scrambled = y.copy()
    y_scrambled[10:] = (y[10:] + 1) % 3  # wrong labels on the masked rows
    # Same weights → compare the loss computed before any update by fresh copies of the model state.
    ref = trainer.model(x, training=False)[EXCLUSIVE].numpy()
    ce = -np.log(ref[np.arange(10), y[:10]]).mean()
    loss_ex, _ = step(
        x,
        tf.constant(y_scrambled.astype("int32")),
        tf.constant(w_half),
        tf.constant(rule),
        tf.constant(np.zeros(20, "float32")),
    )
    assert float(loss_ex) == pytest.approx(ce, rel=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_learns_from_raw_strings(family: str) -> None:
    model, _ = _model(family, multi=True)
    features, y, rule = _catalogue()
    Trainer(model, TrainConfig(epochs=12, batch_size=30, learning_rate=0.02)).fit(
        TrainingData(features, y, rule, np.ones(len(y), bool)), progress=False
    )
    test_features, test_y, _ = _catalogue(n=30, seed=1)
    out = predict(model, test_features)
    assert out[EXCLUSIVE].shape == (30, 3) and out[RULE_BASED].shape == (30, 4)
    assert (out[EXCLUSIVE].argmax(1) == test_y).mean() >= 0.9


@pytest.mark.parametrize("multi", [True, False])
def test_export_reload_gives_the_same_predictions(tmp_path: Path, multi: bool) -> None:
    model, config = _model("ffn", multi=multi)
    features, y, rule = _catalogue()
    Trainer(model, TrainConfig(epochs=3, batch_size=30)).fit(
        TrainingData(
            features, y, rule if multi else None, np.ones(len(y), bool) if multi else None
        ),
        progress=False,
    )
    ids = ["c_shirts", "c_necklaces", "c_sneakers"]
    version_dir = export_model(
        model,
        base_dir=tmp_path,
        name="classifier",
        class_ids=ids,
        top_k=2,
        card={"model_config": config.to_dict(), "classes": ids},
    )
    assert version_dir == tmp_path / "classifier" / "1"
    assert (version_dir / "saved_model.pb").exists()
    assert load_card(version_dir)["version"] == 1
    assert 'name: "classifier"' in (tmp_path / "models.config").read_text()

    serving = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    raw = {k: tf.constant(v[:7].astype(str)) for k, v in features.items()}
    served = serving(**raw)
    expected = predict(model, {k: v[:7] for k, v in features.items()})
    np.testing.assert_allclose(served["exclusive_probs"].numpy(), expected[EXCLUSIVE], atol=1e-5)
    best = expected[EXCLUSIVE].argmax(1)
    assert [i.decode() for i in served["top_k_ids"].numpy()[:, 0]] == [ids[i] for i in best]
    assert served["top_k_probs"].shape == (7, 2)
    assert served["rule_based_probs"].shape == (7, 4 if multi else 0)

    again = export_model(model, base_dir=tmp_path, name="classifier", class_ids=ids, card={})
    assert again.name == "2"


def test_the_optional_image_embedding_input_is_used(tmp_path: Path) -> None:
    features, y, _ = _catalogue()
    config = ModelConfig(
        family="ffn", max_tokens=300, hidden=16, use_image=True, multi_objective=False
    )
    model = build_model(config, 3, 0, join_texts(features, config))
    rng = np.random.default_rng(0)
    # Text says nothing here; the class is only in the image vector.
    blank = {k: np.array([""] * len(y), dtype=object) for k in features}
    images = rng.normal(size=(len(y), 1280)).astype("float32")
    images[np.arange(len(y)), y] += 6.0
    data = TrainingData({**blank, "image_embedding": images}, y)
    Trainer(model, TrainConfig(epochs=15, batch_size=30, learning_rate=0.01)).fit(
        data, progress=False
    )
    out = predict(model, {**blank, "image_embedding": images})[EXCLUSIVE]
    assert (out.argmax(1) == y).mean() >= 0.9


def test_the_linear_family_exports_and_serves_raw_strings(tmp_path: Path) -> None:
    features, y, _ = _catalogue()
    config = ModelConfig(
        family="linear",
        fields=("title",),
        max_tokens=300,
        char_ngrams=(3, 4),
        char_max_tokens=500,
        l2=0.01,
        multi_objective=False,
    )
    model = build_model(config, 3, 0, join_texts(features, config))
    assert model.get_layer(EXCLUSIVE).losses  # the kernel's L2 penalty reaches the trainer
    Trainer(model, TrainConfig(epochs=10, batch_size=30, learning_rate=0.05)).fit(
        TrainingData(features, y), progress=False
    )
    test_features, test_y, _ = _catalogue(n=30, seed=1)
    expected = predict(model, test_features)[EXCLUSIVE]
    assert (expected.argmax(1) == test_y).mean() >= 0.9
    # an unknown word neither carries weight nor shrinks the known ones (TfidfVectorizer's rows)
    known = {k: v[:1] for k, v in test_features.items()}
    unknown = {**known, "title": np.array([f"{known['title'][0]} zzzz"], dtype=object)}
    words = keras.Model(model.inputs, model.get_layer("tfidf_l2").output)
    np.testing.assert_allclose(
        np.asarray(words(dict(known.items()))), np.asarray(words(unknown)), atol=1e-6
    )
    ids = ["c_shirts", "c_necklaces", "c_sneakers"]
    version_dir = export_model(model, base_dir=tmp_path, name="classifier", class_ids=ids, card={})
    serving = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    served = serving(**{k: tf.constant(v.astype(str)) for k, v in test_features.items()})
    np.testing.assert_allclose(served["exclusive_probs"].numpy(), expected, atol=1e-5)


def test_the_budget_adapts_to_the_data_size() -> None:
    config = TrainConfig(epochs=5, batch_size=64, min_updates=1500, max_epochs=300)
    assert config.epochs_for(300) == 300  # 5 batches an epoch
    assert config.epochs_for(2_000) == 47  # 32 batches: ceil(1500 / 32)
    assert config.epochs_for(100_000) == 5  # large data: the configured epochs
    assert TrainConfig(epochs=6).epochs_for(10) == 6  # no min_updates: as before


def test_early_stopping_holds_out_training_rows_and_restores_the_best_epoch() -> None:
    features, y, _ = _catalogue()
    data, validation = hold_out(TrainingData(features, y), 0.2, seed=0)
    assert validation is not None and len(data) + len(validation) == len(y)
    assert set(validation.y_exclusive) == set(y)  # stratified: every class held out
    model, _ = _model("logreg", multi=False)
    trainer = Trainer(
        model,
        TrainConfig(epochs=40, batch_size=30, learning_rate=0.05, patience=2),
    )
    history = trainer.fit(data, progress=False, validation=validation)
    scores = [h["val_accuracy"] for h in history]
    assert len(history) < 40  # stopped early
    best = int(np.argmax(scores))
    assert len(history) - 1 - best == 2  # patience epochs after the best one
    out = predict(model, validation.features)[EXCLUSIVE]
    assert (out.argmax(1) == validation.y_exclusive).mean() == pytest.approx(scores[best])
