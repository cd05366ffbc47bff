"""Fine-tune the image embedder on half of the Myntra article types; evaluate on the other half.

The article types are split by :func:`prodcat.training.image_similarity.split_article_types` (seeded,
disjoint, stratified by master category). Training sees only the train types; precision@k, precision@k
within the master category and nearest-neighbour top-1 are measured on the eval types only, for the
pretrained and the fine-tuned embedder alike, through the same bytes → embedding path as the exported
SavedModel.

Method (fits 2 CPU cores): the MobileNetV2 base is cut at ``params.train_from`` (default: before block 6,
so blocks 6-16 and the last 1x1 conv, 93% of the weights, are trained); the frozen bottom runs once over
a few augmented copies of every training image (as is, mirrored, random resized crop + flip + colour
jitter) and its feature maps are cached; the top is then trained on the cached maps with a
normalised-softmax (proxy) loss on the L2-normalised 1280-d embedding: one learned proxy per train type,
initialised at the type's mean pretrained embedding, cosine logits over a temperature. Batch norm stays
in inference mode. The hyperparameters were chosen on a split of the train types alone (the eval types
were not looked at). The result is the base's weights in the shared ``.weights.h5`` format, plus a
``.meta.json`` beside it recording the image size and the figures.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from prodcat.training.embedder import (
    base_of,
    build_embedder,
    decode_images,
    embed_files,
    meta_path,
    save_base_weights,
)
from prodcat.training.exceptions import TrainingError
from prodcat.training.image_similarity import (
    MyntraImages,
    SimilarityReport,
    evaluate_embeddings,
    split_article_types,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneParams:
    """Hyperparameters of :func:`finetune` (the defaults are what ``bench/embedder_quality.py`` runs).

    ``max_types`` (train on half of them, evaluate on the other half) and ``max_steps`` make tiny runs
    for tests.
    """

    image_size: int = 224
    train_from: str = "block_6_expand"
    epochs: int = 12
    batch_size: int = 64
    learning_rate: float = 2e-4
    proxy_learning_rate: float = 5e-3
    temperature: float = 0.05
    variants: int = 3
    seed: int = 0
    k: int = 10
    max_types: int | None = None
    max_steps: int | None = None
    #: ``types``: train and evaluate on disjoint article types (can it generalise to new types?);
    #: ``images``: every type on both sides, disjoint images (the catalogue's types are known).
    split: str = "types"

    def __post_init__(self) -> None:
        for name in ("image_size", "epochs", "batch_size", "variants", "k"):
            if getattr(self, name) < 1:
                raise TrainingError(
                    f"FinetuneParams.{name} must be >= 1, got {getattr(self, name)}"
                )
        if self.split not in ("types", "images"):
            raise TrainingError(f"FinetuneParams.split must be types or images, got {self.split!r}")
        if self.learning_rate <= 0 or self.proxy_learning_rate <= 0 or self.temperature <= 0:
            raise TrainingError("FinetuneParams learning rates and temperature must be > 0")
        for name in ("max_types", "max_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise TrainingError(f"FinetuneParams.{name} must be >= 1 or None, got {value}")


@dataclass(frozen=True)
class FinetuneResult:
    """What :func:`finetune` did and measured."""

    params: FinetuneParams
    weights: Path
    train_types: list[str]
    eval_types: list[str]
    train_images: int
    pretrained: SimilarityReport
    finetuned: SimilarityReport
    train_seconds: float
    seconds: float
    losses: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "params": asdict(self.params),
            "weights": str(self.weights),
            "image_size": self.params.image_size,
            "train_types": len(self.train_types),
            "eval_types": len(self.eval_types),
            "train_images": self.train_images,
            "eval_images": self.pretrained.images,
            "pretrained": self.pretrained.as_dict(),
            "finetuned": self.finetuned.as_dict(),
            "epoch_losses": self.losses,
            "train_seconds": round(self.train_seconds, 1),
            "seconds": round(self.seconds, 1),
        }


def _read_bytes(paths: Sequence[Path]) -> tf.Tensor:
    try:
        return tf.constant([Path(p).read_bytes() for p in paths], dtype=tf.string)
    except OSError as exc:
        raise TrainingError(f"cannot read training image: {exc}") from exc


def augment(images: tf.Tensor, rng: np.random.Generator, variant: int) -> tf.Tensor:
    """Variant 0: the images; 1: mirrored; 2+: random resized crop, flip and colour jitter."""
    if variant == 0:
        return images
    if variant == 1:
        return tf.image.flip_left_right(images)
    n = int(images.shape[0])
    size = int(images.shape[1])
    scale = rng.uniform(0.7, 1.0, n)
    ratio = np.exp(rng.uniform(np.log(0.85), np.log(1.18), n))
    h = np.clip(np.sqrt(scale / ratio), 0.3, 1.0)
    w = np.clip(np.sqrt(scale * ratio), 0.3, 1.0)
    y0 = rng.uniform(0, 1, n) * (1 - h)
    x0 = rng.uniform(0, 1, n) * (1 - w)
    boxes = np.stack([y0, x0, y0 + h, x0 + w], axis=1).astype(np.float32)
    flip = rng.random(n) < 0.5
    boxes[flip] = boxes[flip][:, [0, 3, 2, 1]]  # x1 < x0 mirrors the crop
    out = tf.image.crop_and_resize(images, boxes, tf.range(n), [size, size])
    brightness = rng.uniform(-20.0, 20.0, (n, 1, 1, 1)).astype(np.float32)
    contrast = rng.uniform(0.8, 1.2, (n, 1, 1, 1)).astype(np.float32)
    saturation = rng.uniform(0.6, 1.4, (n, 1, 1, 1)).astype(np.float32)
    grey = tf.reduce_mean(out, axis=-1, keepdims=True)
    out = grey + (out - grey) * saturation
    mean = tf.reduce_mean(out, axis=[1, 2, 3], keepdims=True)
    out = (out - mean) * contrast + mean + brightness
    return tf.clip_by_value(out, 0.0, 255.0)


def _cut(model: keras.Model, layer: str) -> tuple[keras.Model, keras.Model]:
    base = base_of(model)
    try:
        cut = base.get_layer(layer).input
    except ValueError as exc:
        raise TrainingError(f"no layer {layer!r} in the MobileNetV2 base") from exc
    return keras.Model(base.input, cut), keras.Model(cut, base.output)


def train_embedder(
    model: keras.Model, data: tf.Tensor, labels: np.ndarray, params: FinetuneParams
) -> list[float]:
    """Fine-tune ``model`` (from :func:`build_embedder`) in place on encoded images (tf.string [n])
    labelled ``labels`` (0 .. classes - 1); returns the mean loss per epoch."""
    rng = np.random.default_rng(params.seed)
    classes = int(labels.max()) + 1
    scale = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0)
    bottom, top = _cut(model, params.train_from)
    for layer in bottom.layers:
        layer.trainable = False

    def bottom_maps(x: tf.Tensor) -> tf.Tensor:
        return tf.cast(bottom(scale(x), training=False), tf.float16)

    run_bottom = tf.function(bottom_maps, autograph=False)
    n = len(labels)
    # The frozen bottom's feature maps of every augmented copy, computed once (float16: half the RAM).
    cached: list[list[tf.Tensor]] = [[] for _ in range(params.variants)]
    for i in range(0, n, 64):
        images = decode_images(data[i : i + 64], params.image_size)
        for variant in range(params.variants):
            cached[variant].append(run_bottom(augment(images, rng, variant)))
    features = tf.stack([tf.concat(maps, axis=0) for maps in cached])  # [variants, n, h, w, c]
    pool = keras.layers.GlobalAveragePooling2D()
    norm = keras.layers.UnitNormalization(axis=-1)

    def embed(x: tf.Tensor) -> tf.Tensor:
        return norm(pool(top(x, training=False)))

    # Proxies start at the class means of the pretrained embeddings (a far better start than random).
    start = np.concatenate(
        [embed(tf.cast(features[0, i : i + 64], tf.float32)).numpy() for i in range(0, n, 64)]
    )
    init = np.stack([start[labels == c].mean(axis=0) for c in range(classes)])
    proxies = tf.Variable(init.astype(np.float32), name="proxies")
    weights = top.trainable_variables
    opt = keras.optimizers.Adam(params.learning_rate)
    proxy_opt = keras.optimizers.Adam(params.proxy_learning_rate)
    inv_t = 1.0 / params.temperature

    def step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            emb = embed(x)
            logits = tf.matmul(emb, tf.math.l2_normalize(proxies, axis=1), transpose_b=True)
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits * inv_t)
            )
        grads = tape.gradient(loss, [*weights, proxies])
        opt.apply_gradients(zip(grads[:-1], weights, strict=True))
        proxy_opt.apply_gradients([(grads[-1], proxies)])
        return loss

    spec = tf.TensorSpec([None, *features.shape[2:]], tf.float32)
    opt.build(weights)  # slots made outside the graph: one trace, not two
    proxy_opt.build([proxies])
    compiled_step = tf.function(
        step, input_signature=[spec, tf.TensorSpec([None], tf.int32)], autograph=False
    )
    losses: list[float] = []
    steps = 0
    for epoch in range(params.epochs):
        order = rng.permutation(n)
        picks = rng.integers(0, params.variants, n)  # which augmented copy of each image
        total, batches = 0.0, 0
        for i in range(0, n, params.batch_size):
            idx = order[i : i + params.batch_size]
            x = tf.cast(tf.gather_nd(features, np.stack([picks[idx], idx], axis=1)), tf.float32)
            total += float(compiled_step(x, tf.constant(labels[idx], dtype=tf.int32)))
            batches += 1
            steps += 1
            if params.max_steps is not None and steps >= params.max_steps:
                break
        losses.append(total / max(batches, 1))
        logger.info("fine-tune epoch %d: loss %.4f", epoch + 1, losses[-1])
        if params.max_steps is not None and steps >= params.max_steps:
            break
    return losses


def finetune(
    images: MyntraImages, weights: Path, out: Path, params: FinetuneParams | None = None
) -> FinetuneResult:
    """Split the types, fine-tune on the train half, evaluate both embedders on the eval half."""
    params = params or FinetuneParams()
    if not str(out).endswith(".weights.h5"):
        raise TrainingError(f"fine-tuned weights file must end in .weights.h5, got {out}")
    t0 = time.perf_counter()
    if params.split == "images":
        train, evaluation = split_images(images, params.seed)
        train_types = sorted(set(train.article_types))
        eval_types = sorted(set(evaluation.article_types))
        if set(train.ids) & set(evaluation.ids):
            raise TrainingError("train and eval images overlap")
    else:
        train_types, eval_types = split_article_types(
            images.article_types, images.master_categories, params.seed
        )
        if params.max_types is not None:
            rng = np.random.default_rng(params.seed)
            pick = max(1, params.max_types // 2)
            train_types = sorted(
                str(t) for t in rng.choice(train_types, min(pick, len(train_types)), replace=False)
            )
            eval_types = sorted(
                str(t) for t in rng.choice(eval_types, min(pick, len(eval_types)), replace=False)
            )
        if set(train_types) & set(eval_types):
            raise TrainingError("train and eval article types overlap")
        train, evaluation = images.of_types(train_types), images.of_types(eval_types)
    if len(train_types) < 2 or len(evaluation) < 2:
        raise TrainingError("fine-tuning needs at least 2 train types and 2 eval images")

    def report(model: keras.Model) -> SimilarityReport:
        emb = embed_files(evaluation.paths, model, batch_size=64)
        return evaluate_embeddings(
            emb, evaluation.article_types, evaluation.master_categories, params.k
        )

    model = build_embedder(weights, params.image_size)
    pretrained = report(model)
    logger.info("pretrained on %d eval images: %s", len(evaluation), pretrained)

    index = {t: i for i, t in enumerate(train_types)}
    labels = np.array([index[t] for t in train.article_types], dtype=np.int64)
    t1 = time.perf_counter()
    losses = train_embedder(model, _read_bytes(train.paths), labels, params)
    train_seconds = time.perf_counter() - t1
    finetuned = report(model)
    logger.info("fine-tuned in %.0f s: %s", train_seconds, finetuned)

    save_base_weights(model, out)
    result = FinetuneResult(
        params=params,
        weights=out,
        train_types=list(train_types),
        eval_types=list(eval_types),
        train_images=len(train),
        pretrained=pretrained,
        finetuned=finetuned,
        train_seconds=train_seconds,
        seconds=time.perf_counter() - t0,
        losses=losses,
    )
    meta = {"base_weights": Path(weights).name, **result.as_dict()}
    meta_path(out).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return result


def split_images(images: MyntraImages, seed: int = 0) -> tuple[MyntraImages, MyntraImages]:
    """Disjoint (train, eval) images: each article type's images shuffled (seeded) and halved.

    Types with a single image go to eval only (they cannot be a query with a positive anyway, but
    they are in the gallery as distractors).
    """
    rng = np.random.default_rng(seed)
    by_type: dict[str, list[int]] = {}
    for i, article in enumerate(images.article_types):
        by_type.setdefault(article, []).append(i)
    train: list[int] = []
    evaluation: list[int] = []
    for article in sorted(by_type):
        members = list(rng.permutation(by_type[article]))
        half = len(members) // 2
        train.extend(int(i) for i in members[:half])
        evaluation.extend(int(i) for i in members[half:])
    return images.subset(sorted(train)), images.subset(sorted(evaluation))


def with_params(params: FinetuneParams | None = None, **overrides: Any) -> FinetuneParams:
    """``params`` (or the defaults) with keyword overrides; unknown names raise TrainingError."""
    base = params or FinetuneParams()
    unknown = set(overrides) - set(asdict(base))
    if unknown:
        raise TrainingError(f"unknown fine-tune parameters: {', '.join(sorted(unknown))}")
    return replace(base, **overrides)
