"""``prodcat rules seed|evaluate``: keyword rules for the configured taxonomy (docs/rules.md).

* ``seed [--out FILE]``: rules from the taxonomy's category names
  (:func:`prodcat.training.rule_seed.seed_any_language`; ``--english`` for the English seeder),
  written to ``PRODCAT_TAXONOMY__RULES`` by default;
* ``evaluate --data FILE [--truth FILE]``: precision, recall and coverage (overall and per level)
  of the rules against labelled products: JSON lines with ``title`` and ``category_path`` (or
  another ``--field``), ``prodcat feeds normalize`` output, or with ``--truth`` any feed file
  (raw records are normalised through an inferred profile first, as ``prodcat publish`` would
  send them) paired with its truth file (``{"row", "path"}``).

The taxonomy is the configured one (:func:`prodcat.streams.taxonomy_store.load_taxonomy`), or the
file given with ``--taxonomy``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prodcat.core.settings import Settings
from prodcat.streams.taxonomy_store import load_taxonomy
from prodcat.training.data_files import json_lines, read_truth
from prodcat.training.exceptions import RuleError
from prodcat.training.rule_seed import seed_any_language
from prodcat.training.rules import RuleEngine, dump_rules, evaluate_rules, load_rules, seed_rules
from prodcat.training.taxonomy import CategoryTree
from prodcat.training.taxonomy_files import read_taxonomy_file, split_path

__all__ = ["evaluate_rules_file", "labelled_rows", "seed_rules_file", "taxonomy_for"]

HEADER = """\
Keyword rules for the taxonomy {source} (version {version}), seeded by `prodcat rules seed` from
its category names (see training/rules.py for the format, docs/rules.md for how good they are).
Edit by hand; measure with `prodcat rules evaluate --data FILE`.
"""


def taxonomy_for(settings: Settings, file: Path | None = None) -> CategoryTree:
    """The tree of ``file`` when given, else the configured taxonomy."""
    if file is not None:
        return read_taxonomy_file(file, settings.taxonomy.format)
    return load_taxonomy(settings)


def seed_rules_file(
    settings: Settings,
    out: Path | None = None,
    *,
    taxonomy: Path | None = None,
    max_depth: int | None = None,
    english: bool = False,
    stems: bool = True,
) -> tuple[int, Path]:
    """Seed rules for every node (at most ``max_depth`` deep); returns the count and the file."""
    tree = taxonomy_for(settings, taxonomy)
    nodes = [n.id for n in tree if max_depth is None or n.depth <= max_depth]
    rules = (
        seed_rules(tree, nodes=nodes)
        if english
        else seed_any_language(tree, nodes=nodes, stems=stems)
    )
    target = out or settings.taxonomy.rules
    target.parent.mkdir(parents=True, exist_ok=True)
    dump_rules(rules, target, header=HEADER.format(source=tree.source, version=tree.version))
    return len(rules), target


def _rows(path: Path) -> list[Mapping[str, Any] | None]:
    """The JSON objects of a JSON-lines file; None for a dead letter or a line that is not one."""
    return [
        value if isinstance(value, dict) and "dead_letter" not in value else None
        for _, value in json_lines(path)
    ]


def _is_products(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as handle:
            first = next((line for line in handle if line.strip()), "")
        value = json.loads(first)
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(value, dict) and ("title" in value or "dead_letter" in value)


def labelled_rows(
    settings: Settings, data: Path, *, truth: Path | None = None, field: str = "category_path"
) -> tuple[list[Mapping[str, Any]], list[list[str]]]:
    """Products and their true paths (rows without a product or a path are left out)."""
    rows: list[Mapping[str, Any] | None]
    if truth is None:
        rows = _rows(data)
        paths = [split_path(row.get(field)) if row else [] for row in rows]
    else:
        if _is_products(data):
            rows = _rows(data)
        else:
            from prodcat.streams.feeds.commands import normalize_records

            feed = data.name.split(".")[0]
            records = normalize_records(settings, data, feed=feed)
            rows = [None if "dead_letter" in record else record for record in records]
        by_row = read_truth(truth)
        paths = [list(by_row.get(i, ())) for i in range(len(rows))]
    kept = [(row, path) for row, path in zip(rows, paths, strict=True) if row and path]
    return [row for row, _ in kept], [path for _, path in kept]


def evaluate_rules_file(
    settings: Settings,
    data: Path,
    *,
    truth: Path | None = None,
    rules: Path | None = None,
    taxonomy: Path | None = None,
    field: str = "category_path",
    top: int = 15,
) -> str:
    """The rules' report (:meth:`prodcat.training.rules.RuleReport.format`) on a labelled file."""
    tree = taxonomy_for(settings, taxonomy)
    engine = RuleEngine(load_rules(rules or settings.taxonomy.rules, tree), tree)
    products, paths = labelled_rows(settings, data, truth=truth, field=field)
    if not products:
        raise RuleError(f"{data}: no product with a category path")
    outside = sum(1 for path in paths if tree.find_by_path(path) is None)
    report = evaluate_rules(engine, products, paths, tree).format(top)
    note = f"\n{outside} of {len(paths)} true paths end outside the taxonomy" if outside else ""
    return report + note
