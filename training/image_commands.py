"""What the ``prodcat`` image-embedder commands do, as plain functions returning plain data.

``evaluate_embedder`` measures visual-similarity quality on all Myntra thumbnails, ``finetune_embedder``
fine-tunes on half of the article types and measures both embedders on the other half, and
``export_image_embedder`` writes the SavedModel for TF Serving. Nothing here prints.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from prodcat.core.image_header import DEFAULT_MAX_PIXELS
from prodcat.training.embedder import (
    build_embedder,
    embed_files,
    export_embedder,
    weights_meta,
)
from prodcat.training.exceptions import TrainingError
from prodcat.training.image_finetune import finetune, with_params
from prodcat.training.image_similarity import evaluate_embeddings, load_myntra_images

logger = logging.getLogger(__name__)

PRETRAINED_WEIGHTS = Path("weights") / "mobilenet_v2_0.35_224_no_top.weights.h5"
DEFAULT_IMAGE_SIZE = 224


def pretrained_weights(data_dir: Path) -> Path:
    """The shared ImageNet MobileNetV2-0.35 base weights under ``data_dir``."""
    path = Path(data_dir) / PRETRAINED_WEIGHTS
    if not path.is_file():
        raise TrainingError(f"pretrained embedder weights not found at {path}")
    return path


def _resolve(data_dir: Path, weights: Path | None) -> Path:
    if weights is None:
        return pretrained_weights(data_dir)
    if not Path(weights).is_file():
        raise TrainingError(f"embedder weights not found: {weights}")
    return Path(weights)


def evaluate_embedder(
    data_dir: Path,
    weights: Path | None = None,
    *,
    image_size: int | None = None,
    k: int = 10,
    batch_size: int = 64,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> dict[str, Any]:
    """Precision@k (global and within masterCategory) and NN top-1 on all Myntra thumbnails.

    ``weights`` defaults to the pretrained file; ``image_size`` to the one in the weights'
    ``.meta.json``, else 224. An image announcing more than ``max_pixels`` is refused.
    """
    path = _resolve(data_dir, weights)
    size = image_size or int(weights_meta(path).get("image_size", DEFAULT_IMAGE_SIZE))
    images = load_myntra_images(data_dir)
    model = build_embedder(path, size)
    start = time.perf_counter()
    embeddings = embed_files(images.paths, model, batch_size, max_pixels=max_pixels)
    seconds = time.perf_counter() - start
    report = evaluate_embeddings(embeddings, images.article_types, images.master_categories, k)
    logger.info("embedder %s at %d px: %s", path.name, size, report)
    return {
        "weights": str(path),
        "image_size": size,
        **report.as_dict(),
        "embed_seconds": round(seconds, 1),
        "images_per_s": round(len(images) / seconds, 1),
    }


def finetune_embedder(
    data_dir: Path, out_weights: Path, *, weights: Path | None = None, **params: Any
) -> dict[str, Any]:
    """Fine-tune on the train article types; figures before/after on the eval types, and seconds.

    ``params`` override :class:`prodcat.training.image_finetune.FinetuneParams` fields (``epochs``,
    ``image_size``, ``seed``, ...). Writes ``out_weights`` and its ``.meta.json``.
    """
    base = _resolve(data_dir, weights)
    result = finetune(load_myntra_images(data_dir), base, Path(out_weights), with_params(**params))
    return {"base_weights": str(base), **result.as_dict()}


def export_image_embedder(
    source: Path,
    model_base: Path,
    name: str = "image_embedder",
    *,
    version: int | None = None,
    image_size: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Path:
    """Export the embedder SavedModel; returns its version directory.

    ``source`` is a ``.weights.h5`` file (e.g. from :func:`finetune_embedder`) or a data directory,
    meaning its pretrained weights. The card carries the fine-tune figures when the weights have them.
    """
    source = Path(source)
    path = pretrained_weights(source) if source.is_dir() else _resolve(source.parent, source)
    meta = weights_meta(path)
    card: dict[str, Any] = {"source": "pretrained" if source.is_dir() else "weights file"}
    for key in ("base_weights", "pretrained", "finetuned", "params"):
        if key in meta:
            card[key] = meta[key]
    return export_embedder(
        weights=path,
        base_dir=Path(model_base),
        name=name,
        version=version,
        card=card,
        image_size=image_size,
        max_pixels=max_pixels,
    )
