"""The thesis model zoo (Keras 3 on TensorFlow), each with preprocessing inside the model.

Every model takes the raw product fields as strings (``title``, ``brand``, ``category_text``,
``description``; optionally a 1280-d ``image_embedding``), joins them, and vectorises them with Keras
preprocessing layers adapted on the training texts, so the exported SavedModel serves raw strings
and no train/serve skew is possible. A shared trunk feeds an ``exclusive`` softmax head and,
for multi-objective models, a ``rule_based`` sigmoid head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import keras
import numpy as np
import tensorflow as tf

TEXT_FIELDS: tuple[str, ...] = ("title", "brand", "category_text", "description")
IMAGE_FIELD = "image_embedding"
IMAGE_DIM = 1280
EXCLUSIVE = "exclusive"
RULE_BASED = "rule_based"
HEADS = (EXCLUSIVE, RULE_BASED)

Family = Literal["logreg", "ffn", "wide_deep", "cnn", "bigru", "linear"]
FAMILIES: tuple[Family, ...] = ("logreg", "ffn", "wide_deep", "cnn", "bigru", "linear")


@dataclass(frozen=True)
class ModelConfig:
    """Hyperparameters of one model; persisted in the model card."""

    family: Family = "ffn"
    fields: tuple[str, ...] = ("title", "brand")
    max_tokens: int = 60_000
    ngrams: int = 2
    tfidf_l2: bool = False
    #: ``linear``: character n-gram sizes of a second TF-IDF block (empty = words only)
    char_ngrams: tuple[int, ...] = ()
    char_max_tokens: int = 100_000
    #: L2 penalty on the exclusive head's kernel, scaled as ``l2 / n_train`` (LinearSVC's 1/C)
    l2: float = 0.0
    sequence_length: int = 40
    embedding_dim: int = 128
    hidden: int = 512
    conv_filters: int = 128
    conv_kernels: tuple[int, ...] = (3, 4, 5)
    gru_units: int = 96
    dropout: float = 0.4
    use_image: bool = False
    multi_objective: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("fields", "conv_kernels", "char_ngrams"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)


@keras.saving.register_keras_serializable(package="prodcat")
class JoinFields(keras.layers.Layer):  # type: ignore[misc]  # keras ships no type hints
    """Joins the text fields into one lower-cased string per product (missing = empty)."""

    def call(self, inputs: Sequence[Any]) -> Any:
        parts = [tf.strings.strip(tf.reshape(x, [-1])) for x in inputs]
        joined = tf.strings.reduce_join(tf.stack(parts, axis=1), axis=1, separator=" ")
        return tf.strings.lower(tf.strings.strip(joined))


@keras.saving.register_keras_serializable(package="prodcat")
class KnownTermsL2(keras.layers.Layer):  # type: ignore[misc]  # keras ships no type hints
    """TF-IDF rows without the out-of-vocabulary column (index 0), L2-normalised.

    As scikit-learn's ``TfidfVectorizer``: unknown terms neither carry weight nor shrink the rest."""

    def call(self, inputs: Any) -> Any:
        known = inputs[:, 1:]
        return known * tf.math.rsqrt(
            tf.maximum(tf.reduce_sum(known * known, axis=1, keepdims=True), 1e-12)
        )


def text_inputs(config: ModelConfig) -> dict[str, Any]:
    inputs = {name: keras.Input(shape=(), dtype="string", name=name) for name in TEXT_FIELDS}
    if config.use_image:
        inputs[IMAGE_FIELD] = keras.Input(shape=(IMAGE_DIM,), dtype="float32", name=IMAGE_FIELD)
    return inputs


def join_texts(batch: dict[str, np.ndarray[Any, Any]], config: ModelConfig) -> list[str]:
    """The same text the model's JoinFields computes, for adapting the vectorisers."""
    columns = [batch[f] for f in TEXT_FIELDS if f in config.fields]
    return [
        " ".join(str(v).strip() for v in row).strip().lower() for row in zip(*columns, strict=True)
    ]


def build_model(
    config: ModelConfig,
    n_exclusive: int,
    n_rule_nodes: int,
    adapt_texts: Sequence[str],
) -> keras.Model:
    """A compiled-free Keras model with heads ``exclusive`` (and ``rule_based`` if multi-objective).

    With ``config.l2`` the exclusive kernel carries an L2 penalty of ``l2 / len(adapt_texts)`` per
    example (the trainer adds ``model.losses``): a fixed total penalty, as LinearSVC's ``C``."""
    inputs = text_inputs(config)
    used = [inputs[f] for f in TEXT_FIELDS if f in config.fields]
    text = JoinFields(name="join_fields")(used)
    trunk = _trunk(config, text, adapt_texts)
    if config.use_image:
        image = keras.layers.Dense(config.hidden // 2, activation="relu", name="image_proj")(
            inputs[IMAGE_FIELD]
        )
        trunk = keras.layers.Concatenate(name="with_image")([trunk, image])
    regularizer = None
    if config.l2 > 0:
        regularizer = keras.regularizers.L2(config.l2 / max(len(adapt_texts), 1))
    outputs = {
        EXCLUSIVE: keras.layers.Dense(
            n_exclusive,
            activation="softmax",
            # a linear model starts at zero: features never seen in training keep no weight
            kernel_initializer="zeros" if config.family == "linear" else "glorot_uniform",
            kernel_regularizer=regularizer,
            name=EXCLUSIVE,
        )(trunk)
    }
    if config.multi_objective:
        outputs[RULE_BASED] = keras.layers.Dense(
            n_rule_nodes, activation="sigmoid", name=RULE_BASED
        )(trunk)
    return keras.Model(inputs=inputs, outputs=outputs, name=f"prodcat_{config.family}")


def _trunk(config: ModelConfig, text: Any, adapt_texts: Sequence[str]) -> Any:
    corpus = tf.constant(list(adapt_texts))
    if config.family == "linear":
        return _linear_features(config, text, corpus)
    if config.family in ("logreg", "ffn", "wide_deep"):
        tfidf = keras.layers.TextVectorization(
            max_tokens=config.max_tokens, ngrams=config.ngrams, output_mode="tf_idf", name="tfidf"
        )
        tfidf.adapt(corpus, batch_size=4096)
        wide = tfidf(text)
        if config.tfidf_l2:  # rows L2-normalised, as scikit-learn's TfidfVectorizer does
            wide = keras.layers.UnitNormalization(name="tfidf_l2")(wide)
        if config.family == "logreg":
            return wide
        if config.family == "ffn":
            hidden = keras.layers.Dense(config.hidden, activation="relu", name="hidden")(wide)
            return keras.layers.Dropout(config.dropout, name="dropout")(hidden)
    tokens = keras.layers.TextVectorization(
        max_tokens=config.max_tokens,
        output_mode="int",
        output_sequence_length=config.sequence_length,
        name="tokens",
    )
    tokens.adapt(corpus, batch_size=4096)
    ids = tokens(text)
    embedded = keras.layers.Embedding(
        config.max_tokens,
        config.embedding_dim,
        mask_zero=config.family == "bigru",
        name="embedding",
    )(ids)
    if config.family == "wide_deep":
        pooled = keras.layers.GlobalAveragePooling1D(name="mean_embedding")(embedded)
        deep = keras.layers.Dense(config.hidden // 2, activation="relu", name="deep")(pooled)
        deep = keras.layers.Dropout(config.dropout, name="dropout")(deep)
        return keras.layers.Concatenate(name="wide_and_deep")([wide, deep])
    if config.family == "cnn":
        branches = [
            keras.layers.GlobalMaxPooling1D(name=f"max_{k}")(
                keras.layers.Conv1D(config.conv_filters, k, activation="relu", name=f"conv_{k}")(
                    embedded
                )
            )
            for k in config.conv_kernels
        ]
        merged = keras.layers.Concatenate(name="convs")(branches)
        return keras.layers.Dropout(config.dropout, name="dropout")(merged)
    if config.family == "bigru":
        encoded = keras.layers.Bidirectional(keras.layers.GRU(config.gru_units), name="bigru")(
            embedded
        )
        return keras.layers.Dropout(config.dropout, name="dropout")(encoded)
    raise ValueError(f"unknown model family {config.family!r}; known: {FAMILIES}")


def _linear_features(config: ModelConfig, text: Any, corpus: Any) -> Any:
    """The baseline's features inside the model: L2-normalised TF-IDF over word 1..n-grams and,
    with ``char_ngrams``, a second L2-normalised block over character n-grams (both adapted on the
    training texts); the exclusive head on top is then a linear softmax classifier."""
    words = keras.layers.TextVectorization(
        max_tokens=config.max_tokens, ngrams=config.ngrams, output_mode="tf_idf", name="tfidf"
    )
    words.adapt(corpus, batch_size=4096)
    blocks = [KnownTermsL2(name="tfidf_l2")(words(text))]
    if config.char_ngrams:
        chars = keras.layers.TextVectorization(
            max_tokens=config.char_max_tokens,
            split="character",
            ngrams=config.char_ngrams,
            output_mode="tf_idf",
            name="char_tfidf",
        )
        chars.adapt(corpus, batch_size=4096)
        blocks.append(KnownTermsL2(name="char_tfidf_l2")(chars(text)))
    if len(blocks) == 1:
        return blocks[0]
    return keras.layers.Concatenate(name="tfidf_blocks")(blocks)


def head_variables(model: keras.Model) -> dict[str, list[Any]]:
    """Trainable variables by part: ``trunk`` and one entry per head present."""
    parts: dict[str, list[Any]] = {}
    head_ids: set[int] = set()
    for head in HEADS:
        try:
            layer = model.get_layer(head)
        except ValueError:
            continue
        parts[head] = list(layer.trainable_variables)
        head_ids.update(id(v) for v in parts[head])
    parts["trunk"] = [v for v in model.trainable_variables if id(v) not in head_ids]
    return parts
