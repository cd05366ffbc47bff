"""The taxonomy as a managed artifact: reading it from files, deriving it from paths, its stored form.

Everything here is pure (no Kafka): the streams layer stores and reads the versions
(:mod:`prodcat.streams.taxonomy_store`), training code receives a :class:`CategoryTree`.

**Sources** (:func:`read_taxonomy_file`, format ``auto`` tells them apart by name and content):

* ``google``: Google's product taxonomy with ids (``"1 - Animals & Pet Supplies"``); ids kept;
* ``bestbuy``: Best Buy's categories JSON; ids kept;
* ``paths-csv``: one path a row, either one column ``"A > B > C"`` or one column per level
  (a first row naming columns, ``path`` / ``category`` / ``level1`` ..., is skipped);
* ``paths-jsonl``: one path a line: a list of levels, a string ``"A > B"``, or an object with
  ``path`` or ``category_path`` (so a ``*.truth.jsonl`` file is a paths file);
* ``tree-json``: :meth:`CategoryTree.to_json` output.

Path-built nodes get :func:`prodcat.core.ids.path_id` ids, so a node keeps its id in every version
of the tree that has the same path. :func:`derive_tree` builds a tree from the category paths of
products (counts kept, so the exclusive subset can use them).

**Exclusive subset** (:func:`exclusive_ids`): with product counts, the count-based subset of
:meth:`CategoryTree.exclusive_nodes`; without counts (a taxonomy file), the leaves of the tree cut
at ``max_depth``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from prodcat.schemas.records import Taxonomy, TaxonomyNode
from prodcat.training.exceptions import TaxonomyError
from prodcat.training.taxonomy import FORMAT, CategoryTree

__all__ = [
    "SOURCE_FORMATS",
    "StoredTaxonomy",
    "TaxonomyDiff",
    "category_paths",
    "derive_tree",
    "diff_trees",
    "exclusive_ids",
    "format_tree",
    "read_taxonomy_file",
    "sniff_format",
    "split_path",
]

SOURCE_FORMATS: Final = ("auto", "google", "bestbuy", "paths-csv", "paths-jsonl", "tree-json")
_GOOGLE_FIRST: Final = re.compile(r"^\s*(#\s*Google_Product_Taxonomy|\d+\s+-\s+\S)")
_HEADER_CELL: Final = re.compile(
    r"^(path|paths|category|categories|category_path|category path|taxonomy|level ?_?\d+|l\d+)$"
)
_SEP: Final = re.compile(r"\s*>+\s*")


def split_path(value: object) -> list[str]:
    """Levels of a path value: a list of strings, or a string split on ``>`` (``>>`` too)."""
    if isinstance(value, str):
        return [level for level in _SEP.split(value.strip()) if level.strip()]
    if isinstance(value, list | tuple):
        return [str(level).strip() for level in value if str(level).strip()]
    return []


def _read(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise TaxonomyError(f"cannot read {path}: {exc}") from exc


def sniff_format(path: Path) -> str:
    """The format of a taxonomy file from its name and first non-empty line."""
    text = _read(path)
    first = next((line for line in text.splitlines() if line.strip()), "")
    suffix = Path(path).suffix.lower()
    if _GOOGLE_FIRST.match(first):
        return "google"
    if suffix in {".jsonl", ".ndjson"}:
        return "paths-jsonl"
    if suffix == ".json" or first.lstrip().startswith(("{", "[")):
        try:
            data = json.loads(text)
        except ValueError:
            return "paths-jsonl"  # several JSON values: one a line
        if isinstance(data, dict) and data.get("format") == FORMAT:
            return "tree-json"
        first_item = data[0] if isinstance(data, list) and data else None
        steps = first_item.get("path") if isinstance(first_item, dict) else None
        if isinstance(steps, list) and all(isinstance(step, dict) for step in steps):
            return "bestbuy"
        return "paths-jsonl"
    return "paths-csv"


def _jsonl_paths(text: str, source: Path, field: str | None) -> Iterator[list[str]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise TaxonomyError(f"{source}:{number}: not JSON: {exc}") from exc
        if isinstance(value, dict):
            if "dead_letter" in value:
                continue
            keys = (field,) if field else ("path", "category_path")
            value = next((value[k] for k in keys if k in value), None)
        yield split_path(value)


def _csv_paths(text: str, field: str | None) -> Iterator[list[str]]:
    dialect: type[csv.Dialect] | csv.Dialect = csv.excel
    with contextlib.suppress(csv.Error):
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    rows = list(csv.reader(io.StringIO(text), dialect))
    if not rows:
        return
    header = [cell.strip().casefold() for cell in rows[0]]
    if field is not None:
        if field.casefold() not in header:
            raise TaxonomyError(f"no column {field!r} in the header {rows[0]}")
        column = header.index(field.casefold())
        for row in rows[1:]:
            yield split_path(row[column] if column < len(row) else "")
        return
    if all(_HEADER_CELL.match(cell) for cell in header if cell):
        rows = rows[1:]
    for row in rows:
        cells = [cell.strip() for cell in row if cell.strip()]
        yield split_path(cells[0]) if len(cells) == 1 else cells


def category_paths(path: Path, *, field: str | None = None) -> Iterator[list[str]]:
    """The category path of every record of a JSON-lines or CSV file (empty lists included).

    JSON lines: ``field`` of each object (default ``path``, then ``category_path``: truth files,
    ``prodcat feeds normalize`` output), a list or a ``>``-delimited string, or a bare list/string;
    dead-letter lines are skipped. CSV: ``field``'s column, or the whole row (see module doc).
    """
    text = _read(path)
    first = next((line for line in text.splitlines() if line.strip()), "")
    if Path(path).suffix.lower() in {".jsonl", ".ndjson", ".json"} or first.startswith(("{", "[")):
        yield from _jsonl_paths(text, path, field)
    else:
        yield from _csv_paths(text, field)


def derive_tree(
    paths: Iterable[Sequence[str]], *, min_count: int = 1, source: str = "derived"
) -> CategoryTree:
    """A tree of the category paths of products; nodes with fewer than ``min_count`` products go."""
    tree = CategoryTree.from_paths(
        (p for p in paths if p), min_count=min_count, min_root_count=min_count, source=source
    )
    if not len(tree):
        raise TaxonomyError(f"{source}: no category path with {min_count} or more products")
    return tree


def read_taxonomy_file(path: Path, format: str = "auto") -> CategoryTree:
    """A taxonomy file as a tree (see the module doc for the formats)."""
    path = Path(path)
    if format not in SOURCE_FORMATS:
        raise TaxonomyError(f"unknown taxonomy format {format!r} (one of {SOURCE_FORMATS})")
    kind = sniff_format(path) if format == "auto" else format
    if kind == "google":
        return CategoryTree.from_google_taxonomy(path)
    if kind == "bestbuy":
        return CategoryTree.from_bestbuy(path)
    if kind == "tree-json":
        return CategoryTree.from_json(_read(path))
    text = _read(path)
    paths = _jsonl_paths(text, path, None) if kind == "paths-jsonl" else _csv_paths(text, None)
    return derive_tree(paths, source=f"paths:{path.name}")


def exclusive_ids(tree: CategoryTree, *, max_depth: int, min_count: int) -> frozenset[str]:
    """The exclusive subset: count-based with product counts, else the leaves cut at max_depth."""
    if any(node.count for node in tree):
        return frozenset(
            n.id for n in tree.exclusive_nodes(max_depth=max_depth, min_count=min_count)
        )
    return frozenset(
        node.id
        for node in tree
        if node.depth == max_depth or (node.depth < max_depth and not node.children)
    )


@dataclass(frozen=True)
class StoredTaxonomy:
    """One stored version of the tree: the tree, its exclusive subset and where it came from."""

    tree: CategoryTree
    sequence: int
    exclusive: frozenset[str]
    exclusive_max_depth: int
    exclusive_min_count: int
    previous: str | None = None
    reason: str = ""
    created_at: int = 0

    @property
    def version(self) -> str:
        return self.tree.version

    def to_record(self) -> Taxonomy:
        nodes: list[TaxonomyNode] = [
            {
                "id": node.id,
                "name": node.name,
                "path": list(node.path),
                "parent": node.parent,
                "count": node.count,
                "exclusive": node.id in self.exclusive,
            }
            for node in self.tree
        ]
        return {
            "version": self.version,
            "sequence": self.sequence,
            "source": self.tree.source,
            "nodes": nodes,
            "exclusive_max_depth": self.exclusive_max_depth,
            "exclusive_min_count": self.exclusive_min_count,
            "previous": self.previous,
            "reason": self.reason,
            "created_at": self.created_at,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> StoredTaxonomy:
        """The stored version of a decoded ``Taxonomy`` record; the content must match its version."""
        try:
            nodes = list(record["nodes"])
            tree = CategoryTree.from_dict(
                {
                    "format": FORMAT,
                    "source": record["source"],
                    "version": record["version"],
                    "nodes": [
                        {
                            "id": n["id"],
                            "name": n["name"],
                            "parent": n["parent"],
                            "count": n["count"],
                        }
                        for n in nodes
                    ],
                }
            )
            return cls(
                tree,
                int(record["sequence"]),
                frozenset(n["id"] for n in nodes if n["exclusive"]),
                int(record["exclusive_max_depth"]),
                int(record["exclusive_min_count"]),
                record.get("previous"),
                str(record.get("reason", "")),
                int(record.get("created_at", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TaxonomyError(f"malformed taxonomy record: {exc!r}") from exc


@dataclass(frozen=True)
class TaxonomyDiff:
    """What changed between two trees, by node id (ids are stable, so a renamed path is a new id
    for path-built trees and a rename of the same id for trees with their own ids)."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    renamed: tuple[str, ...]
    moved: tuple[str, ...]
    old: CategoryTree
    new: CategoryTree

    @property
    def unchanged(self) -> int:
        changed = set(self.renamed) | set(self.moved)
        return sum(1 for node in self.old if node.id in self.new and node.id not in changed)

    def format(self, limit: int = 50) -> str:
        def path(tree: CategoryTree, node_id: str) -> str:
            return " > ".join(tree[node_id].path)

        lines = [
            f"{self.old.version} ({len(self.old)} nodes) -> {self.new.version} ({len(self.new)} "
            f"nodes): {len(self.added)} added, {len(self.removed)} removed, {len(self.renamed)} "
            f"renamed, {len(self.moved)} moved, {self.unchanged} unchanged"
        ]
        lines += [f"+ {i}  {path(self.new, i)}" for i in self.added[:limit]]
        lines += [f"- {i}  {path(self.old, i)}" for i in self.removed[:limit]]
        lines += [
            f"~ {i}  {path(self.old, i)}  ->  {path(self.new, i)}"
            for i in (self.renamed + self.moved)[:limit]
        ]
        return "\n".join(lines)


def diff_trees(old: CategoryTree, new: CategoryTree) -> TaxonomyDiff:
    """Nodes added, removed, renamed (same id and parent, other name) and moved (other parent)."""
    added = tuple(node.id for node in new if node.id not in old)
    removed = tuple(node.id for node in old if node.id not in new)
    renamed, moved = [], []
    for node in old:
        other = new.get(node.id)
        if other is None:
            continue
        if other.parent != node.parent:
            moved.append(node.id)
        elif other.name != node.name:
            renamed.append(node.id)
    return TaxonomyDiff(added, removed, tuple(renamed), tuple(moved), old, new)


def format_tree(
    tree: CategoryTree, *, depth: int | None = None, exclusive: frozenset[str] = frozenset()
) -> str:
    """The tree as indented lines ``name  id  [count]  *`` (``*``: exclusive), down to ``depth``."""
    lines = []
    for node in tree:
        if depth is not None and node.depth > depth:
            continue
        count = f"  [{node.count}]" if node.count else ""
        star = "  *" if node.id in exclusive else ""
        lines.append(f"{'  ' * (node.depth - 1)}{node.name}  {node.id}{count}{star}")
    return "\n".join(lines)
