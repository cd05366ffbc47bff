"""Image-embedder quality (Myntra thumbnails) and SavedModel throughput, in one run.

    .venv/bin/python bench/embedder_quality.py [--out var/bench/embedder] [--skip-finetune]

1. Pretrained MobileNetV2-0.35 on all 2,637 thumbnails: precision@10 of the article type (global and
   within the master category) and nearest-neighbour top-1
   (``prodcat.training.image_commands.evaluate_embedder``).
2. Fine-tune on the train half of the article types; the same figures for the pretrained and the
   fine-tuned embedder on the eval half (``finetune_embedder``; defaults of ``FinetuneParams``).
3. Export the fine-tuned (or, with --skip-finetune, the pretrained) embedder as a SavedModel, reload it
   with ``tf.saved_model.load`` and time ``serving_default`` on all thumbnails' JPEG bytes in batches of
   64 (one warm-up batch excluded; median of --runs passes); the SavedModel's own embeddings are scored
   again on the eval split, so the export is checked against the fine-tune figures.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from prodcat.core.settings import load_settings
from prodcat.training.embedder import embed_bytes
from prodcat.training.image_commands import (
    evaluate_embedder,
    export_image_embedder,
    finetune_embedder,
    pretrained_weights,
)
from prodcat.training.image_similarity import (
    evaluate_embeddings,
    load_myntra_images,
    split_article_types,
)


def savedmodel_figures(version_dir: Path, data_dir: Path, runs: int) -> dict[str, Any]:
    images = load_myntra_images(data_dir)
    data = [p.read_bytes() for p in images.paths]
    loaded = tf.saved_model.load(str(version_dir))
    sig = loaded.signatures["serving_default"]

    def fn(batch: tf.Tensor) -> tf.Tensor:
        return sig(image_bytes=batch)["embedding"]

    embed_bytes(data[:64], fn, 64)  # warm-up
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        emb = embed_bytes(data, fn, 64)
        rates.append(len(data) / (time.perf_counter() - start))
    _, evaluation = split_article_types(images.article_types, images.master_categories)
    keep = [i for i, t in enumerate(images.article_types) if t in set(evaluation)]
    sub = images.subset(keep)
    report = evaluate_embeddings(emb[keep], sub.article_types, sub.master_categories)
    whole = evaluate_embeddings(emb, images.article_types, images.master_categories)
    return {
        "version_dir": str(version_dir),
        "images_per_s_batch64": round(statistics.median(rates), 1),
        "runs": [round(r, 1) for r in rates],
        "eval_split": report.as_dict(),
        "all_images": whole.as_dict(),
        "unit_norm_max_error": float(np.abs(np.linalg.norm(emb, axis=1) - 1).max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path.cwd() / "var" / "bench" / "embedder")
    parser.add_argument("--skip-finetune", action="store_true")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    data_dir = load_settings().data_dir
    shutil.rmtree(args.out / "models", ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"pretrained_all": evaluate_embedder(data_dir)}
    if args.skip_finetune:
        weights = pretrained_weights(data_dir)
    else:
        weights = args.out / "embedder_finetuned.weights.h5"
        result["finetune"] = finetune_embedder(data_dir, weights)
        result["finetuned_all_incl_train_types"] = evaluate_embedder(data_dir, weights)
    version = export_image_embedder(weights, args.out / "models")
    result["savedmodel"] = savedmodel_figures(version, data_dir, args.runs)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
