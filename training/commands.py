"""What the ``prodcat rules`` and ``prodcat baseline`` commands do, as plain functions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from prodcat.training.baseline import tfidf_linearsvc
from prodcat.training.data_files import LabelledData
from prodcat.training.dataset import flipkart_tree, load_flipkart, protocol_split
from prodcat.training.rules import (
    DEMO_RULES,
    DEMO_RULES_HEADER,
    RuleEngine,
    dump_rules,
    evaluate_rules,
    load_rules,
    seed_rules,
)

SEED_MAX_DEPTH = 3


def seed_flipkart_rules(data_dir: Path, out: Path = DEMO_RULES) -> int:
    """Seed the legacy rules from the Flipkart tree's category names; returns the rule count."""
    tree = flipkart_tree(load_flipkart(data_dir))
    rules = seed_rules(tree, nodes=[n.id for n in tree if n.depth <= SEED_MAX_DEPTH])
    dump_rules(rules, out, header=DEMO_RULES_HEADER)
    return len(rules)


def evaluate_flipkart_rules(data_dir: Path, rules_path: Path = DEMO_RULES) -> str:
    """Precision/recall/coverage of the rules against the true (cleaned) Flipkart paths."""
    examples = load_flipkart(data_dir)
    tree = flipkart_tree(examples)
    engine = RuleEngine(load_rules(rules_path, tree), tree)
    return evaluate_rules(engine, examples, [e.path for e in examples], tree).format()


def baseline_table(
    data_dir: Path, levels: Sequence[int] = (1, 2, 3), *, data: LabelledData | None = None
) -> str:
    """TF-IDF + LinearSVC on the fixed protocol, one row per level (Markdown).

    On Flipkart, or on ``data`` (``prodcat baseline --data``); a level with fewer than two classes
    (the data's paths are shallower) gets a row saying so."""
    examples = list(data.examples) if data is not None else load_flipkart(data_dir)
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
