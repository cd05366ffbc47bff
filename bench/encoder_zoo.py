"""The text encoder in the model zoo: accuracy and prediction throughput at L1-L3 on Flipkart.

    .venv/bin/python bench/encoder_zoo.py [--levels 1,2,3] [--runs 3]

On the fixed protocol split of each level, with every training label, one LinearSVC (C = 1) each on:
``tfidf`` (word 1-2-grams ⊕ char 2-5-grams of title and brand, the experiment's linear learner),
``encoder`` (the pretrained encoder's 384-d title vectors, :mod:`prodcat.training.text_encoder`)
and ``tfidf+encoder`` (both side by side; ``+names`` rows add one example per class titled by its
taxonomy name). Throughput is what predicting the test split costs per product from raw strings
(featurising included), the median of ``--runs`` timings in this one process, so rows compare with
each other. Writes ``docs/benchmarks/encoder_zoo.csv`` unless ``--csv`` says otherwise.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.svm import LinearSVC

from prodcat.core.settings import load_settings
from prodcat.training.al_learner import WordCharFeatures
from prodcat.training.dataset import demo_examples, protocol_split
from prodcat.training.taxonomy import class_name_text
from prodcat.training.text_encoder import TextEncoder


def _text(example: Any) -> str:
    return f"{example.title} {example.brand or ''}".strip()


def _timed(function: Any, runs: int) -> tuple[Any, float]:
    seconds, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - started)
    return result, statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", default="1,2,3")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--csv", type=Path, default=Path("docs/benchmarks/encoder_zoo.csv"))
    args = parser.parse_args()
    settings = load_settings()
    encoder = TextEncoder(settings.encoder.path, max_tokens=settings.encoder.max_tokens)
    examples = demo_examples(settings.data_dir)
    rows: list[dict[str, Any]] = []
    for level in [int(x) for x in args.levels.split(",")]:
        rows += _level(examples, level, encoder, args.runs)
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    with args.csv.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _level(examples: Any, level: int, encoder: TextEncoder, runs: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    split = protocol_split(examples, level)
    train, test = [_text(e) for e in split.train], [_text(e) for e in split.test]
    index = {label: i for i, label in enumerate(split.labels)}
    y = np.array([index[label] for label in split.train_labels])
    y_test = np.array([index[label] for label in split.test_labels])
    names = [class_name_text(label.split(" > ")) for label in split.labels]
    tfidf = WordCharFeatures(train)
    vectors = encoder.encode(train)
    name_vectors = encoder.encode(names)

    def encoded(texts: list[str]) -> sp.csr_matrix:
        return sp.csr_matrix(encoder.encode(texts))

    def joined(texts: list[str], weight: float) -> sp.csr_matrix:
        return sp.hstack([tfidf.transform(texts), weight * encoded(texts)]).tocsr()

    models = {
        "tfidf": (tfidf.pool, tfidf.transform, tfidf.transform(names)),
        "encoder": (sp.csr_matrix(vectors), encoded, sp.csr_matrix(name_vectors)),
        "tfidf+encoder": (
            sp.hstack([tfidf.pool, vectors]).tocsr(),
            lambda t: joined(t, 1.0),
            sp.hstack([tfidf.transform(names), name_vectors]).tocsr(),
        ),
    }
    for name, (x, featurise, prototypes) in models.items():
        for with_names in (False, True):
            xs, ys = x, y
            if with_names:
                xs = sp.vstack([x, prototypes]).tocsr()
                ys = np.concatenate([y, np.arange(len(split.labels))])
            model = LinearSVC(C=1.0, random_state=0).fit(xs, ys)
            predicted, seconds = _timed(lambda f=featurise, m=model: m.predict(f(test)), runs)
            rows.append(
                {
                    "level": level,
                    "model": name + ("+names" if with_names else ""),
                    "classes": len(split.labels),
                    "train": len(train),
                    "test": len(test),
                    "accuracy": round(float((predicted == y_test).mean()), 4),
                    "products_per_s": round(len(test) / seconds),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


if __name__ == "__main__":
    main()
