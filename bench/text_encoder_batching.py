"""The text encoder's batching: texts batched by token count against batches in input order.

    .venv/bin/python bench/text_encoder_batching.py [--texts 1500] [--runs 3]

Encodes the first ``--texts`` Flipkart titles (title and brand, as the active-learning pool does)
with the installed encoder (``PRODCAT_ENCODER__PATH``), in one process, medians of ``--runs``:

* input order: ``encode`` called on each run of ``batch_size`` consecutive texts, so every batch
  pads to the longest text among its neighbours (what ``TextEncoder.encode`` did before it sorted);
* by length: one ``encode`` call over all texts (it batches them by token count).

Prints texts per second of each and their ratio, and the largest cosine distance between the two
ways' vectors of one text (the int8 model rounds differently in batches of another shape).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from prodcat.core.settings import load_settings
from prodcat.training.dataset import load_flipkart
from prodcat.training.text_encoder import TextEncoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=1500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    settings = load_settings()
    examples = load_flipkart(Path(settings.data_dir))[: args.texts]
    texts = [f"{e.title} {e.brand or ''}".strip() for e in examples]
    config = settings.encoder
    encoder = TextEncoder(config.path, max_tokens=config.max_tokens, batch_size=config.batch_size)
    size = encoder.batch_size
    encoder.encode(texts[:size])  # warm up

    def in_order() -> np.ndarray:
        return np.concatenate(
            [encoder.encode(texts[i : i + size]) for i in range(0, len(texts), size)]
        )

    timings: dict[str, list[float]] = {"input order": [], "by length": []}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(args.runs):
        for name, run in (("input order", in_order), ("by length", lambda: encoder.encode(texts))):
            started = time.perf_counter()
            vectors[name] = run()
            timings[name].append(time.perf_counter() - started)
    rates = {name: len(texts) / statistics.median(t) for name, t in timings.items()}
    for name, rate in rates.items():
        print(
            f"{name:12s} {rate:8.1f} texts/s  (runs: {', '.join(f'{t:.2f}' for t in timings[name])} s)"
        )
    print(f"by length / input order: {rates['by length'] / rates['input order']:.2f}")
    cosine = np.sum(vectors["input order"] * vectors["by length"], axis=1)
    print(
        f"largest cosine distance between the two ways' vectors of a text: {1 - cosine.min():.4f}"
    )


if __name__ == "__main__":
    main()
