"""The image embedder: MobileNetV2 (alpha 0.35) → global average pooling → L2 norm, 1280-d.

The exported SavedModel (TF Serving layout ``<base_dir>/<name>/<version>/``) decodes and resizes the
images itself, so a client sends encoded bytes and no train/serve skew is possible: its
``serving_default`` signature takes ``image_bytes`` (tf.string [None], one JPEG/PNG/GIF/BMP per image)
and returns ``embedding`` (float32 [None, 1280], unit L2 norm). Bytes that do not decode make the call
fail with ``tf.errors.InvalidArgumentError``; the caller isolates the bad image.

Evaluation and fine-tuning use :func:`decode_images` and :func:`bytes_embedder`, the very functions the
SavedModel runs, so their figures hold for the exported model.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from prodcat.core.errors import ModelStoreError
from prodcat.core.image_header import DEFAULT_MAX_PIXELS, ImageTooLargeError, check_pixels
from prodcat.core.model_store import export_version
from prodcat.training.exceptions import TrainingError

logger = logging.getLogger(__name__)

EMBEDDING_DIM = 1280
ALPHA = 0.35
BASE_NAME = "mobilenetv2_base"
INPUT_NAME = "image_bytes"
OUTPUT_NAME = "embedding"
DEFAULT_IMAGE_SIZE = 224

BytesEmbedFn = Callable[[tf.Tensor], tf.Tensor]


class EmbedderError(TrainingError):
    """The embedder cannot be built, loaded or exported (missing or mismatched weights, bad size)."""


def build_embedder(weights: Path | None, image_size: int = DEFAULT_IMAGE_SIZE) -> keras.Model:
    """Float images [n, size, size, 3] in [0, 255] → L2-normalised 1280-d embeddings.

    ``weights`` is a ``.weights.h5`` file of the MobileNetV2 base (the shared ImageNet file, or one
    written by :func:`save_base_weights`); ``None`` leaves the base randomly initialised.
    """
    if image_size < 32:
        raise EmbedderError(f"image_size must be >= 32, got {image_size}")
    inputs = keras.Input((image_size, image_size, 3), dtype="float32", name="images")
    # MobileNetV2's preprocessing: [0, 255] → [-1, 1].
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale")(inputs)
    base = keras.applications.MobileNetV2(
        input_shape=(image_size, image_size, 3),
        alpha=ALPHA,
        include_top=False,
        weights=None,
        name=BASE_NAME,
    )
    if weights is not None:
        if not Path(weights).is_file():
            raise EmbedderError(f"embedder weights not found: {weights}")
        try:
            base.load_weights(str(weights))
        except (ValueError, OSError, KeyError) as exc:
            raise EmbedderError(f"cannot load embedder weights from {weights}: {exc}") from exc
    x = base(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.UnitNormalization(axis=-1, name="l2")(x)
    return keras.Model(inputs, outputs, name="image_embedder")


def base_of(model: keras.Model) -> keras.Model:
    """The MobileNetV2 base inside a model built by :func:`build_embedder`."""
    base: keras.Model = model.get_layer(BASE_NAME)
    return base


def save_base_weights(model: keras.Model, path: Path) -> Path:
    """Write the base's weights in the format :func:`build_embedder` loads (``*.weights.h5``)."""
    if not str(path).endswith(".weights.h5"):
        raise EmbedderError(f"weights file must end in .weights.h5, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    base_of(model).save_weights(str(path))
    return path


def meta_path(weights: Path) -> Path:
    """The ``.meta.json`` written beside fine-tuned weights (image size, figures): ``x.meta.json``."""
    name = Path(weights).name.removesuffix(".h5").removesuffix(".weights")
    return Path(weights).with_name(f"{name}.meta.json")


def weights_meta(weights: Path) -> dict[str, Any]:
    """The weights' ``.meta.json`` as a dict, or ``{}`` where there is none (the ImageNet file)."""
    path = meta_path(weights)
    if not path.is_file():
        return {}
    try:
        meta: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EmbedderError(f"cannot read {path}: {exc}") from exc
    return meta


_PNG = b"\x89PNG\r\n\x1a\n"
_HEADER_PAD = b"\0" * 32  # so every header field below can be read from any input


def _header_uint(padded: tf.Tensor, position: int, size: int, *, big_endian: bool) -> tf.Tensor:
    """The unsigned integer of ``size`` bytes at ``position`` (int64)."""
    raw = tf.io.decode_raw(tf.strings.substr(padded, position, size), tf.uint8)
    weights = [256**i for i in range(size)]
    if big_endian:
        weights.reverse()
    return tf.reduce_sum(tf.cast(raw, tf.int64) * tf.constant(weights, tf.int64))


def _header_int32(padded: tf.Tensor, position: int) -> tf.Tensor:
    """The magnitude of a little-endian int32 (a BMP's height is negative when top-down)."""
    value = _header_uint(padded, position, 4, big_endian=False)
    return tf.where(value >= 2**31, 2**32 - value, value)


def header_pixels(data: tf.Tensor) -> tf.Tensor:
    """Width x height (int64) from the header of one encoded image, as TensorFlow's decoders
    will allocate it (a GIF's logical screen, a JPEG's frame); 0 for a format they do not read.
    The graph's own guard against decompression bombs (:func:`decode_image`)."""
    padded = tf.strings.join([data, tf.constant(_HEADER_PAD)])

    def starts(magic: bytes) -> tf.Tensor:
        return tf.equal(tf.strings.substr(padded, 0, len(magic)), tf.constant(magic))

    def png() -> tf.Tensor:  # each side capped at 2**31 (PNG's own limit): no int64 overflow
        width = tf.minimum(_header_uint(padded, 16, 4, big_endian=True), 2**31)
        return width * tf.minimum(_header_uint(padded, 20, 4, big_endian=True), 2**31)

    def gif() -> tf.Tensor:
        width = _header_uint(padded, 6, 2, big_endian=False)
        return width * _header_uint(padded, 8, 2, big_endian=False)

    def bmp() -> tf.Tensor:
        return _header_int32(padded, 18) * _header_int32(padded, 22)

    def jpeg() -> tf.Tensor:
        shape = tf.cast(tf.image.extract_jpeg_shape(data), tf.int64)
        return shape[0] * shape[1]

    return tf.case(
        [(starts(_PNG), png), (starts(b"GIF8"), gif), (starts(b"BM"), bmp),
         (starts(b"\xff\xd8"), jpeg)],
        default=lambda: tf.constant(0, tf.int64),
    )  # fmt: skip


def decode_image(
    data: tf.Tensor, image_size: int, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tf.Tensor:
    """One encoded image (scalar tf.string) → float32 [size, size, 3] in [0, 255].

    JPEG, PNG, GIF (first frame) and BMP; grayscale is replicated to RGB and transparency is
    composited over white (product shots have white backgrounds). Resize: bilinear with antialias,
    to a square (the aspect ratio is not kept). An image whose header gives more than
    ``max_pixels`` pixels fails with ``InvalidArgumentError`` before it is decoded (a
    decompression bomb: a few hundred KB that would decode to gigabytes), whoever calls the
    graph (a TF Serving client that skipped the header check included).
    """
    small_enough = tf.debugging.assert_less_equal(
        header_pixels(data),
        tf.constant(max_pixels, tf.int64),
        message=f"image too large to decode: more than {max_pixels} pixels",
    )
    with tf.control_dependencies([small_enough]):
        img = tf.io.decode_image(data, channels=0, dtype=tf.float32, expand_animations=False)
    channels = tf.shape(img)[-1]
    rgb = tf.cond(
        channels >= 3,
        lambda: img[..., :3],
        lambda: tf.tile(img[..., :1], [1, 1, 3]),
    )
    has_alpha = tf.logical_or(tf.equal(channels, 2), tf.equal(channels, 4))
    alpha = tf.cond(has_alpha, lambda: img[..., -1:], lambda: tf.ones_like(img[..., :1]))
    rgb = rgb * alpha + (1.0 - alpha)
    resized = tf.image.resize(rgb, [image_size, image_size], antialias=True)
    return tf.clip_by_value(resized, 0.0, 1.0) * 255.0


def decode_images(
    data: tf.Tensor, image_size: int, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tf.Tensor:
    """A batch of encoded images (tf.string [n]) → float32 [n, size, size, 3] in [0, 255]."""
    return tf.map_fn(
        lambda d: decode_image(d, image_size, max_pixels),
        data,
        fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32),
    )


def embed_encoded(
    model: keras.Model, data: tf.Tensor, image_size: int, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tf.Tensor:
    """Graph code shared by the SavedModel and :func:`bytes_embedder`: tf.string [n] → [n, 1280].

    An empty batch gives [0, 1280] (oneDNN's convolutions reject a zero batch).
    """
    return tf.cond(
        tf.size(data) > 0,
        lambda: model(decode_images(data, image_size, max_pixels), training=False),
        lambda: tf.zeros([0, EMBEDDING_DIM], tf.float32),
    )


def bytes_embedder(model: keras.Model, max_pixels: int = DEFAULT_MAX_PIXELS) -> BytesEmbedFn:
    """A graph function: encoded images (tf.string [n]) → embeddings [n, 1280] with ``model``;
    images of more than ``max_pixels`` pixels fail (:func:`decode_image`)."""
    image_size = int(model.input_shape[1])

    def embed(data: tf.Tensor) -> tf.Tensor:
        return embed_encoded(model, data, image_size, max_pixels)

    compiled: BytesEmbedFn = tf.function(embed, input_signature=[tf.TensorSpec([None], tf.string)])
    return compiled


def embed_bytes(
    images: Sequence[bytes], embed_fn: BytesEmbedFn, batch_size: int = 64
) -> np.ndarray:
    """Encoded images → float32 [n, dim] with ``embed_fn`` (e.g. :func:`bytes_embedder`'s result or a
    SavedModel signature wrapped as ``lambda b: sig(image_bytes=b)["embedding"]``)."""
    if batch_size < 1:
        raise EmbedderError(f"batch_size must be >= 1, got {batch_size}")
    chunks = [
        np.asarray(embed_fn(tf.constant(list(images[i : i + batch_size]), dtype=tf.string)))
        for i in range(0, len(images), batch_size)
    ]
    if not chunks:
        return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)


def embed_files(
    paths: Iterable[Path],
    model_or_fn: keras.Model | BytesEmbedFn,
    batch_size: int = 64,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Embed image files; ``model_or_fn`` is a :func:`build_embedder` model or a bytes function.
    A file whose header announces more than ``max_pixels`` is refused before anything is decoded
    (a decompression bomb among training images)."""
    fn = bytes_embedder(model_or_fn) if isinstance(model_or_fn, keras.Model) else model_or_fn
    data = []
    for path in paths:
        try:
            data.append(Path(path).read_bytes())
        except OSError as exc:
            raise EmbedderError(f"cannot read image {path}: {exc}") from exc
        try:
            check_pixels(data[-1], max_pixels)
        except ImageTooLargeError as exc:
            raise EmbedderError(
                f"image {path} is too large to decode ({exc}): remove it, or raise "
                "PRODCAT_IMAGES__MAX_PIXELS if it is a real photo"
            ) from exc
    return embed_bytes(data, fn, batch_size)


def export_embedder(
    *,
    weights: Path,
    base_dir: Path,
    name: str = "image_embedder",
    version: int | None = None,
    card: Mapping[str, Any] | None = None,
    image_size: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Path:
    """Write the embedder SavedModel and its card; returns the version directory. Never overwrites.
    The model refuses images of more than ``max_pixels`` pixels itself (``PRODCAT_IMAGES__MAX_PIXELS``
    when it is exported: workers and the API check the same bound on the header first).

    ``image_size`` defaults to the one the weights were fine-tuned and evaluated at (their
    ``.meta.json``), else 224.
    """
    meta = weights_meta(weights)
    image_size = image_size or int(meta.get("image_size", DEFAULT_IMAGE_SIZE))
    model = build_embedder(weights, image_size)

    def serve(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_NAME: embed_encoded(model, image_bytes, image_size, max_pixels)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serving_default",
        fn=serve,
        input_signature=[tf.TensorSpec([None], tf.string, name=INPUT_NAME)],
    )
    full_card = {
        "kind": "image_embedder",
        "dim": EMBEDDING_DIM,
        "image_size": image_size,
        "max_pixels": max_pixels,
        "weights": Path(weights).name,
        "input": INPUT_NAME,
        "output": OUTPUT_NAME,
        **(card or {}),
    }
    try:
        target = export_version(
            base_dir,
            name,
            lambda tmp: archive.write_out(str(tmp), verbose=False),
            full_card,
            version=version,
        )
    except ModelStoreError as exc:
        raise EmbedderError(str(exc)) from exc
    logger.info("exported image embedder %s version %s to %s", name, target.name, target)
    return target
