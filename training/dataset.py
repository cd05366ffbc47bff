"""Training examples from the shared datasets, and the fixed evaluation protocol.

The protocol (other code compares against published figures, so it must not drift):

1. label = the feed's raw category path truncated to level ``L``, levels whitespace-collapsed and
   lower-cased, joined with ``" > "``; products whose path has fewer than ``L`` levels are dropped
   (a shorter path has no level-``L`` label; the published figures are per level, on products that
   have one);
2. classes with fewer than ``min_class_size`` (5) products are dropped;
3. stratified 80/20 split with seed 0: classes in sorted label order, each class's products sorted
   by product id, shuffled by one ``random.Random(seed)``, the first ``round(test_size * n)``
   (at least 1, at most n - 1) go to test. Both parts keep the input order.

The raw path, not the noise-cleaned :attr:`Example.path`, is what the protocol truncates. The split
is deterministic and independent of the input order, but not the same draw as scikit-learn's
``train_test_split(stratify=...)``; class sizes agree to within one product per class.

``category_text`` is the label source: a model predicting the category must not see it. Default
model inputs are :data:`MODEL_INPUT_FIELDS` (title, brand, description).
"""

from __future__ import annotations

import csv
import json
import logging
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from prodcat.training.exceptions import DatasetError
from prodcat.training.taxonomy import CategoryTree, clean_path

__all__ = [
    "DEMO_DATASET",
    "DEMO_FILE",
    "FLIPKART_FILE",
    "MODEL_INPUT_FIELDS",
    "Example",
    "ProtocolSummary",
    "Split",
    "demo_examples",
    "load_flipkart",
    "model_inputs",
    "parse_flipkart_tree",
    "protocol_label",
    "protocol_split",
    "protocol_summary",
    "tree_of_examples",
]

logger = logging.getLogger(__name__)

FLIPKART_FILE: Final = Path("flipkart") / "flipkart_20k.csv"
MODEL_INPUT_FIELDS: Final = ("title", "brand", "description")
_FLIPKART_COLUMNS: Final = ("uniq_id", "product_name", "product_category_tree", "brand")


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled product. ``raw_path`` is the feed's path; ``path`` the noise-cleaned one."""

    product_id: str
    title: str
    brand: str | None
    category_text: str
    raw_path: tuple[str, ...]
    path: tuple[str, ...]
    description: str | None = None


_WHITESPACE: Final = re.compile(r"\s+")


def parse_flipkart_tree(text: str) -> list[str]:
    """Levels of Flipkart's ``product_category_tree`` (``'["A >> B >> C"]'``), whitespace collapsed.

    The first path of the list is taken; a plain ``"A >> B"`` string is accepted too. Levels keep a
    trailing ``...`` (it tells :func:`clean_path` that the level is a truncated product name).
    """
    text = text.strip()
    if text.startswith("["):
        try:
            decoded = json.loads(text)
        except ValueError:
            decoded = None
        if isinstance(decoded, list):
            text = next((item for item in decoded if isinstance(item, str)), "")
        else:
            text = text.strip("[]\"' ")
    levels = (_WHITESPACE.sub(" ", part).strip() for part in text.split(">>"))
    return [level for level in levels if level]


def model_inputs(example: Example) -> dict[str, str]:
    """The fields a model may read (never the category text, which holds the label)."""
    return {name: getattr(example, name) or "" for name in MODEL_INPUT_FIELDS}


#: The dataset the commands use without ``--data``: the demo's (``prodcat/demo.py``). Everything
#: else in prodcat reads the configured taxonomy and the user's own files.
DEMO_DATASET: Final = "flipkart"
#: Its file under the data folder.
DEMO_FILE: Final = FLIPKART_FILE


def demo_examples(data_dir: str | Path) -> list[Example]:
    """The demo's labelled products (what ``prodcat train``, ``baseline`` and the experiments use
    without ``--data``)."""
    return load_flipkart(data_dir)


def load_flipkart(data_dir: str | Path) -> list[Example]:
    """The 20,000 Flipkart products of ``<data_dir>/flipkart/flipkart_20k.csv``, in file order."""
    path = Path(data_dir) / FLIPKART_FILE
    examples: list[Example] = []
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in _FLIPKART_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DatasetError(f"{path}: missing columns {', '.join(missing)}")
            for row in reader:
                title = (row["product_name"] or "").strip()
                brand = (row["brand"] or "").strip() or None
                raw = tuple(parse_flipkart_tree(row["product_category_tree"] or ""))
                examples.append(
                    Example(
                        product_id=row["uniq_id"],
                        title=title,
                        brand=brand,
                        category_text=" > ".join(raw),
                        raw_path=raw,
                        path=tuple(clean_path(raw, title, brand)),
                    )
                )
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    logger.info("loaded %d Flipkart products from %s", len(examples), path)
    return examples


def tree_of_examples(
    examples: Iterable[Example], *, min_count: int = 5, min_root_count: int = 5
) -> CategoryTree:
    """The category tree of the examples' cleaned paths (see :meth:`CategoryTree.from_paths`)."""
    return CategoryTree.from_paths(
        (example.path for example in examples),
        min_count=min_count,
        min_root_count=min_root_count,
        source="flipkart",
    )


def protocol_label(levels: Sequence[str], level: int) -> str | None:
    """The protocol label of a raw path at ``level``, or None when the path is shorter."""
    if len(levels) < level:
        return None
    return " > ".join(" ".join(part.split()).lower() for part in levels[:level])


@dataclass(frozen=True, slots=True)
class Split:
    """A protocol split; a class's index is its position in the sorted ``labels``."""

    level: int
    labels: tuple[str, ...]
    train: tuple[Example, ...]
    train_labels: tuple[str, ...]
    test: tuple[Example, ...]
    test_labels: tuple[str, ...]
    dropped_short: int
    dropped_rare: int

    @property
    def train_y(self) -> list[int]:
        index = {label: i for i, label in enumerate(self.labels)}
        return [index[label] for label in self.train_labels]

    @property
    def test_y(self) -> list[int]:
        index = {label: i for i, label in enumerate(self.labels)}
        return [index[label] for label in self.test_labels]


def protocol_split(
    examples: Sequence[Example],
    level: int,
    *,
    min_class_size: int = 5,
    test_size: float = 0.2,
    seed: int = 0,
) -> Split:
    """The fixed protocol's stratified split at ``level`` (see the module docstring)."""
    if level < 1:
        raise DatasetError(f"protocol level must be at least 1, got {level}")
    if not 0.0 < test_size < 1.0 or min_class_size < 2:
        raise DatasetError("protocol needs 0 < test_size < 1 and min_class_size >= 2")
    members: dict[str, list[int]] = {}
    dropped_short = 0
    for position, example in enumerate(examples):
        label = protocol_label(example.raw_path, level)
        if label is None:
            dropped_short += 1
        else:
            members.setdefault(label, []).append(position)
    labels = tuple(sorted(label for label, kept in members.items() if len(kept) >= min_class_size))
    dropped_rare = sum(len(kept) for kept in members.values()) - sum(
        len(members[label]) for label in labels
    )
    rng = random.Random(seed)
    test_positions: set[int] = set()
    for label in labels:
        ordered = sorted(members[label], key=lambda p: (examples[p].product_id, p))
        rng.shuffle(ordered)
        n_test = min(len(ordered) - 1, max(1, round(test_size * len(ordered))))
        test_positions.update(ordered[:n_test])
    label_of = {position: label for label in labels for position in members[label]}
    train = [p for p in sorted(label_of) if p not in test_positions]
    test = sorted(test_positions)
    return Split(
        level=level,
        labels=labels,
        train=tuple(examples[p] for p in train),
        train_labels=tuple(label_of[p] for p in train),
        test=tuple(examples[p] for p in test),
        test_labels=tuple(label_of[p] for p in test),
        dropped_short=dropped_short,
        dropped_rare=dropped_rare,
    )


@dataclass(frozen=True, slots=True)
class ProtocolSummary:
    """Sizes of a protocol split."""

    level: int
    classes: int
    train: int
    test: int
    dropped_short: int
    dropped_rare: int
    smallest_class: int
    largest_class: int

    def format(self) -> str:
        return (
            f"L{self.level}: {self.classes} classes, train {self.train}, test {self.test} "
            f"(dropped: {self.dropped_short} shorter than L{self.level}, {self.dropped_rare} in "
            f"classes < min size; class sizes {self.smallest_class}..{self.largest_class})"
        )


def protocol_summary(split: Split) -> ProtocolSummary:
    sizes = Counter(split.train_labels) + Counter(split.test_labels)
    return ProtocolSummary(
        level=split.level,
        classes=len(split.labels),
        train=len(split.train),
        test=len(split.test),
        dropped_short=split.dropped_short,
        dropped_rare=split.dropped_rare,
        smallest_class=min(sizes.values(), default=0),
        largest_class=max(sizes.values(), default=0),
    )
