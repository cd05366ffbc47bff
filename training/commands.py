"""What the ``prodcat baseline`` command does, as a plain function."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from prodcat.training.baseline import tfidf_linearsvc
from prodcat.training.data_files import LabelledData
from prodcat.training.dataset import demo_examples, protocol_split


def baseline_table(
    data_dir: Path, levels: Sequence[int] = (1, 2, 3), *, data: LabelledData | None = None
) -> str:
    """TF-IDF + LinearSVC on the fixed protocol, one row per level (Markdown).

    On the demo's dataset, or on ``data`` (``prodcat baseline --data``); a level with fewer than two classes
    (the data's paths are shallower) gets a row saying so."""
    examples = list(data.examples) if data is not None else demo_examples(data_dir)
    rows = [
        "| level | classes | train | test | accuracy | macro-F1 | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for level in levels:
        split = protocol_split(examples, level)
        if len(split.labels) < 2:
            rows.append(f"| L{level} | {len(split.labels)} | — | — | — | — | — |")
            continue
        r = tfidf_linearsvc(split)
        rows.append(
            f"| L{level} | {len(split.labels)} | {r.train_size} | {r.test_size} | "
            f"{r.accuracy:.4f} | {r.macro_f1:.4f} | {r.seconds:.1f} |"
        )
    return "\n".join(rows)
