"""Similar products by image, by title and both fused, through milvus-lite (or a Milvus server).

    .venv/bin/python bench/similarity_modes.py [--uri var/bench/similarity/sim.db] [--weights]

The 2,637 Myntra thumbnails and their titles (``productDisplayName``): image vectors by the
pretrained image embedder, title vectors by :mod:`prodcat.serving.text_vectors`, both written with
:class:`~prodcat.serving.product_vectors.ProductVectors` into a fresh pair of collections. Every
product is then a query (itself excluded) in each mode, answered by ``ProductVectors.search`` as
the API answers it: precision@10 of the query's ``articleType``, globally and restricted to its
``masterCategory`` subtree, and the search latency per mode (median and p99 over all queries,
measured in this one process, so the modes compare with each other).

``--weights`` adds a sweep of the hybrid text weight (0 … 1), computed exactly in numpy from the
same vectors. ``--kinds`` adds the same-kind term (``similarity.kind_weight``, the default 0.3)
through ``ProductVectors.search`` with two sources of predicted kinds: a classifier of this
catalogue's own article types (logistic regression on title character n-grams, cross-fitted on
two halves, so no product's kind comes from a model that saw its label: what a deployment's
classify stage gives for its own taxonomy) and the demo's served classifier, trained on another
catalogue's taxonomy (Flipkart), whose classes fit these products poorly; plus, in numpy, the
weight swept for both. ``--encoder`` adds the pretrained sentence encoder's title vectors (numpy, exact)
for comparison with the hashed ones. Writes ``docs/benchmarks/similarity.csv``
(``embedder,mode,p_at_10``) unless ``--csv`` says otherwise; prints one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from prodcat.core.ids import path_id
from prodcat.core.settings import MilvusSettings, SimilaritySettings, load_settings
from prodcat.serving.product_vectors import MODES, ProductVectors
from prodcat.serving.text_vectors import text_vectors
from prodcat.serving.vector_store import ImageVector
from prodcat.training.embedder import build_embedder, embed_files
from prodcat.training.image_commands import pretrained_weights
from prodcat.training.image_similarity import load_myntra_images

IMAGE_EMBEDDER = "mobilenet_v2_0.35 pretrained"
TEXT_EMBEDDER = "hashed char 3-5-grams, 256-d"


def _titles(data_dir: Path, ids: tuple[str, ...]) -> list[str]:
    with (data_dir / "myntra" / "labels.csv").open(newline="", encoding="utf-8") as fh:
        names = {row["id"]: row["productDisplayName"] for row in csv.DictReader(fh)}
    return [names.get(i, "") for i in ids]


def _precision(labels: np.ndarray, query: int, hits: list[str], index: dict[str, int]) -> float:
    return sum(labels[index[h]] == labels[query] for h in hits[:10]) / 10


def numpy_p10(sim: np.ndarray, labels: np.ndarray) -> float:
    """Exact precision@10 from a similarity matrix (the diagonal, each query itself, excluded)."""
    scores = sim.copy()
    np.fill_diagonal(scores, -np.inf)
    top = np.argpartition(-scores, 10, axis=1)[:, :10]
    return float((labels[top] == labels[:, None]).mean())


_KIND_LOOKUPS: dict[str, dict[str, tuple[str, float]]] = {}


def _kind_lookups(
    ids: tuple[str, ...], titles: list[str], labels: np.ndarray, settings: Any
) -> dict[str, dict[str, tuple[str, float]]]:
    """Product id -> (predicted kind, its probability), from each source (made once)."""
    if _KIND_LOOKUPS:
        return _KIND_LOOKUPS
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from prodcat.serving.backends import create_backend
    from prodcat.training.inputs import model_inputs

    features = TfidfVectorizer(sublinear_tf=True, analyzer="char_wb", ngram_range=(2, 5))
    x = features.fit_transform(titles)
    half = np.random.default_rng(0).permutation(len(ids)) % 2 == 0
    own: dict[str, tuple[str, float]] = {}
    for side in (True, False):
        fit, predict = half == side, half != side
        model = LogisticRegression(C=10, max_iter=2000).fit(x[fit], labels[fit])
        probs = model.predict_proba(x[predict])
        for j, row in enumerate(np.flatnonzero(predict)):
            own[ids[row]] = (str(model.classes_[probs[j].argmax()]), float(probs[j].max()))
    _KIND_LOOKUPS["own catalogue's classifier, cross-fitted"] = own
    backend = create_backend(settings.serving, settings.serving.classifier)
    probs = backend.predict(model_inputs([{"title": t} for t in titles])).outputs["exclusive_probs"]
    _KIND_LOOKUPS["the demo's served model, another catalogue's taxonomy"] = {
        pid: (str(int(probs[i].argmax())), float(probs[i].max())) for i, pid in enumerate(ids)
    }
    return _KIND_LOOKUPS


def _kind_accuracy(
    lookup: dict[str, tuple[str, float]], ids: tuple[str, ...], labels: np.ndarray
) -> float:
    """How often the predicted kind is the product's article type (NaN for another taxonomy)."""
    kinds = [lookup.get(pid, ("", 0.0))[0] for pid in ids]
    if not set(kinds) & set(labels.tolist()):
        return float("nan")
    return float(np.mean([k == label for k, label in zip(kinds, labels, strict=True)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", default="var/bench/similarity/sim.db")
    parser.add_argument("--csv", type=Path, default=Path("docs/benchmarks/similarity.csv"))
    parser.add_argument("--weights", action="store_true")
    parser.add_argument("--encoder", action="store_true")
    parser.add_argument("--kinds", action="store_true")
    parser.add_argument("--text-weight", type=float, default=SimilaritySettings().text_weight)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    settings = load_settings()
    data_dir = settings.data_dir
    images = load_myntra_images(data_dir)
    titles = _titles(data_dir, images.ids)
    labels = np.array(images.article_types)
    index = {pid: i for i, pid in enumerate(images.ids)}

    started = time.perf_counter()
    image_vectors = embed_files(list(images.paths), build_embedder(pretrained_weights(data_dir)))
    embed_s = time.perf_counter() - started

    if not args.uri.startswith("http"):
        shutil.rmtree(Path(args.uri).parent, ignore_errors=True)
    milvus = MilvusSettings(
        uri=args.uri,
        collection="bench_images",
        text_collection="bench_titles",
        dim=image_vectors.shape[1],
    )
    result: dict[str, Any] = {"products": len(images), "image_embed_s": round(embed_s, 1)}
    rows: list[dict[str, Any]] = []
    for fusion in ("weighted", "rrf"):
        similarity = SimilaritySettings(text_weight=args.text_weight, fusion=fusion)
        vectors = ProductVectors(milvus, similarity)
        if fusion == "weighted":
            vectors.images.drop()
            vectors.texts.drop()
            vectors.ensure_collections()
            paths = [[m] for m in images.master_categories]
            vectors.images.upsert(
                ImageVector(pid, image_vectors[i], paths[i], 1, "")
                for i, pid in enumerate(images.ids)
            )
            started = time.perf_counter()
            title_rows = vectors.title_rows(
                (pid, titles[i], paths[i], "") for i, pid in enumerate(images.ids)
            )
            result["title_vectors_per_s"] = round(len(title_rows) / (time.perf_counter() - started))
            vectors.texts.upsert(title_rows)
            vectors.images.flush()
            vectors.texts.flush()
        else:
            vectors.ensure_collections()
        modes = MODES if fusion == "weighted" else ("hybrid",)
        for mode in modes:
            for restricted in (False, True):
                precisions, seconds = [], []
                for i, pid in enumerate(images.ids):
                    category = path_id([images.master_categories[i]]) if restricted else None
                    query = vectors.of_product(pid, mode)
                    began = time.perf_counter()
                    hits = vectors.search(query, 10, category_id=category, exclude=pid)
                    seconds.append(time.perf_counter() - began)
                    precisions.append(_precision(labels, i, [h.product_id for h in hits], index))
                name = mode if fusion == "weighted" else "hybrid_rrf"
                key = f"{name}{'_within_master' if restricted else ''}"
                ms = sorted(s * 1000 for s in seconds)
                result[key] = {
                    "p_at_10": round(float(np.mean(precisions)), 4),
                    "median_ms": round(statistics.median(ms), 2),
                    "p99_ms": round(ms[int(0.99 * (len(ms) - 1))], 2),
                }
                if not restricted:
                    embedder = {
                        "image": IMAGE_EMBEDDER,
                        "text": TEXT_EMBEDDER,
                    }.get(mode, f"{IMAGE_EMBEDDER} + {TEXT_EMBEDDER}")
                    rows.append(
                        {
                            "embedder": embedder,
                            "mode": name,
                            "p_at_10": f"{np.mean(precisions):.4f}",
                        }
                    )
        if fusion == "weighted" and args.kinds:
            lookups = _kind_lookups(images.ids, titles, labels, settings)
            for source, lookup in lookups.items():
                kinded = ProductVectors(
                    milvus,
                    SimilaritySettings(text_weight=args.text_weight),
                    kinds=lambda ids, known=lookup: {i: known[i] for i in ids if i in known},
                )
                precisions, seconds = [], []
                for i, pid in enumerate(images.ids):
                    query = kinded.of_product(pid, "hybrid")
                    began = time.perf_counter()
                    hits = kinded.search(query, 10, exclude=pid, of=pid)
                    seconds.append(time.perf_counter() - began)
                    precisions.append(_precision(labels, i, [h.product_id for h in hits], index))
                kinded.close()
                ms = sorted(s * 1000 for s in seconds)
                result[f"hybrid_same_kind_{source}"] = {
                    "kind_weight": kinded.settings.kind_weight,
                    "kind_accuracy": round(_kind_accuracy(lookup, images.ids, labels), 4),
                    "p_at_10": round(float(np.mean(precisions)), 4),
                    "median_ms": round(statistics.median(ms), 2),
                    "p99_ms": round(ms[int(0.99 * (len(ms) - 1))], 2),
                }
                rows.append(
                    {
                        "embedder": f"{IMAGE_EMBEDDER} + {TEXT_EMBEDDER} + same kind ({source})",
                        "mode": "hybrid",
                        "p_at_10": f"{np.mean(precisions):.4f}",
                    }
                )
        vectors.close()

    unit = image_vectors / np.linalg.norm(image_vectors, axis=1, keepdims=True)
    image_sim = unit @ unit.T
    hashed = text_vectors(titles, milvus.text_dim)
    text_sim = hashed @ hashed.T
    if args.weights:
        result["weight_sweep"] = {
            f"{w:.1f}": round(numpy_p10(w * text_sim + (1 - w) * image_sim, labels), 4)
            for w in np.linspace(0, 1, 11)
        }
    if args.kinds:
        hybrid_sim = args.text_weight * text_sim + (1 - args.text_weight) * image_sim
        for source, lookup in _kind_lookups(images.ids, titles, labels, settings).items():
            kind = [lookup.get(pid, ("", 0.0)) for pid in images.ids]
            names = np.array([k for k, _ in kind], dtype=object)
            confidence = np.sqrt(np.array([p for _, p in kind]))
            agree = (names[:, None] == names[None, :]) * np.outer(confidence, confidence)
            result[f"kind_weight_sweep_{source}"] = {
                f"{w:.1f}": round(numpy_p10(hybrid_sim + w * agree, labels), 4)
                for w in (0.0, 0.1, 0.2, 0.3, 0.5, 1.0)
            }
    if args.encoder:
        from prodcat.training.text_encoder import TextEncoder

        encoder = TextEncoder(settings.encoder.path)
        started = time.perf_counter()
        encoded = encoder.encode(titles)
        result["encoder_titles_per_s"] = round(len(titles) / (time.perf_counter() - started))
        encoded_sim = encoded @ encoded.T
        name = f"sentence encoder ({settings.encoder.path.name})"
        encoder_rows = {
            "text": numpy_p10(encoded_sim, labels),
            "hybrid": numpy_p10(
                args.text_weight * encoded_sim + (1 - args.text_weight) * image_sim, labels
            ),
        }
        for mode, value in encoder_rows.items():
            embedder = name if mode == "text" else f"{IMAGE_EMBEDDER} + {name}"
            rows.append({"embedder": embedder, "mode": mode, "p_at_10": f"{value:.4f}"})
            result[f"encoder_{mode}"] = round(value, 4)
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    with args.csv.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["embedder", "mode", "p_at_10"])
        writer.writeheader()
        writer.writerows(rows)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
