"""Category trees built from product paths or from taxonomy files (Google, Best Buy).

Which tree a deployment uses is configured, stored and versioned elsewhere
(:mod:`prodcat.training.taxonomy_files`, :mod:`prodcat.streams.taxonomy_store`).

Names are matched case-insensitively after Unicode (NFKC) and whitespace normalisation, with curly
quotes made straight and a trailing ellipsis dropped (:func:`normalize_name`); a node shows the most
frequent original spelling. Category ids are stable: a path-built node's id is ``c_`` plus the first
12 hex digits of the SHA-1 of its normalised path (``"clothing>women's clothing>shorts"``), so it
depends neither on insertion order nor on which other products exist; a node read from a taxonomy
file keeps the file's own id (Google ``"1"``, Best Buy ``"abcat0010000"``).

Noise in product paths is handled in two places. :func:`clean_path` removes the trailing levels of
one path that only repeat its product (the title, a truncated title, the title with details, or a
"<brand> <parent>" level). :meth:`CategoryTree.from_paths` prunes nodes with fewer than
``min_count`` products (their products attach to the deepest ancestor that survives) and roots with
fewer than ``min_root_count`` products (their products have no path in the tree).

Exclusive subset (the softmax objective): among nodes at depth <= ``max_depth``, a node is
exclusive when at least ``min_count`` products of its subtree fall into no exclusive descendant.
Computed bottom-up, so a leaf (or a node at ``max_depth``) is exclusive when it has enough
products, and an internal node is exclusive, meaning "none of my exclusive children", when enough
of its products are left over: its own products plus those of children too small to be exclusive.
A product's exclusive target is the deepest exclusive node on its path; a product whose path meets
no exclusive node has none.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from prodcat.core.ids import display_name, normalize_name, path_id
from prodcat.training.exceptions import TaxonomyError

__all__ = [
    "CategoryNode",
    "CategoryTree",
    "class_name_text",
    "clean_path",
    "display_name",
    "normalize_name",
    "path_id",
]

FORMAT: Final = "prodcat.category_tree/1"
_WHITESPACE: Final = re.compile(r"\s+")
_ELLIPSIS: Final = re.compile(r"\s*(?:\.{2,}|…)+\s*$")
_GOOGLE_LINE: Final = re.compile(r"^\s*(\d+)\s+-\s+(.+?)\s*$")
_GOOGLE_SEP: Final = re.compile(r"\s+>\s+")


def class_name_text(levels: Sequence[str]) -> str:
    """A category's own words, as a product title would use them: its path below the first level,
    then its own name again (the deepest level is what tells siblings apart). The text of the
    class-name examples classifiers learn from besides labelled products."""
    names = [level.strip() for level in levels if level.strip()]
    return " ".join([*names[1:], names[-1]]) if names else ""


def _is_truncated(level: str) -> bool:
    return _ELLIPSIS.search(level) is not None


def _repeats_title(level: str, title: str, min_prefix_words: int, min_title_chars: int) -> bool:
    core = normalize_name(level)
    truncated = _is_truncated(level)
    name = normalize_name(title)
    if not core or not name:
        return not core
    if core == name or (truncated and name.startswith(core)):
        return True
    if core.startswith(name) and (
        len(name) >= min_title_chars or core[len(name) :].startswith(" (")
    ):
        return True
    return name.startswith(core + " ") and len(core.split()) >= min_prefix_words


def _is_brand_level(level: str, parent: str, title: str | None, brand: str | None) -> bool:
    name, parent_name = normalize_name(level), normalize_name(parent)
    if not parent_name or not name.endswith(" " + parent_name):
        return False
    prefix = name[: -len(parent_name) - 1].strip()
    if not prefix:
        return False
    if brand and normalize_name(brand) == prefix:
        return True
    return bool(title) and (normalize_name(title or "") + " ").startswith(prefix + " ")


def _repeats_product(
    kept: list[str],
    title: str | None,
    brand: str | None,
    min_prefix_words: int,
    min_title_chars: int,
) -> bool:
    last = kept[-1]
    if _is_truncated(last) or not display_name(last):
        return True
    if title and _repeats_title(last, title, min_prefix_words, min_title_chars):
        return True
    return len(kept) > 1 and _is_brand_level(last, kept[-2], title, brand)


def clean_path(
    levels: Sequence[str],
    title: str | None = None,
    brand: str | None = None,
    *,
    min_prefix_words: int = 3,
    min_title_chars: int = 10,
) -> list[str]:
    """The path without the trailing levels that only repeat the product; levels as displayed.

    Trailing levels are dropped while the last one
    - is truncated (ends in ``...``: category names never are) or empty;
    - equals the title, is a truncated prefix of it, or is the title plus details (``"<title>
      (Multicolor, ..."``; titles of ``min_title_chars`` or more, or details in parentheses);
    - is a prefix of the title of at least ``min_prefix_words`` words;
    - is a brand level, ``"<prefix> <parent level>"`` where the prefix is the brand or the title
      starts with it (``"Shorts >> Alisha Shorts"``).
    Levels elsewhere are kept: in the feeds seen so far these levels only occur at the end.
    """
    kept = [_WHITESPACE.sub(" ", level).strip() for level in levels]
    kept = [level for level in kept if level]
    while kept and _repeats_product(kept, title, brand, min_prefix_words, min_title_chars):
        kept.pop()
    return [display_name(level) for level in kept]


@dataclass(frozen=True, slots=True)
class CategoryNode:
    """One category. ``depth`` 1 is a root; counts are products (path-built trees, else 0).

    ``count`` is the products in the subtree; ``own_count`` those attached to this node itself
    (their path ends here, or continued into nodes that were pruned).
    """

    id: str
    name: str
    path: tuple[str, ...]
    parent: str | None
    depth: int
    children: tuple[str, ...] = ()
    count: int = 0
    own_count: int = 0

    @property
    def key(self) -> str:
        """The normalised path, ``"clothing>women's clothing>shorts"``."""
        return ">".join(normalize_name(level) for level in self.path)


@dataclass(frozen=True, slots=True)
class _Spec:
    id: str
    names: tuple[str, ...]
    parent: str | None
    count: int = 0


def _assemble(specs: Iterable[_Spec]) -> list[CategoryNode]:
    by_id: dict[str, _Spec] = {}
    for spec in specs:
        if spec.id in by_id:
            raise TaxonomyError(f"duplicate category id {spec.id!r}")
        by_id[spec.id] = spec
    children: dict[str | None, list[str]] = {}
    for spec in by_id.values():
        if spec.parent is not None and spec.parent not in by_id:
            raise TaxonomyError(f"category {spec.id!r} has an unknown parent {spec.parent!r}")
        children.setdefault(spec.parent, []).append(spec.id)
    keys = {spec.id: tuple(normalize_name(name) for name in spec.names) for spec in by_id.values()}
    nodes: list[CategoryNode] = []
    stack: list[tuple[str, tuple[str, ...]]] = []
    for root in sorted(children.get(None, []), key=lambda i: (keys[i], i), reverse=True):
        stack.append((root, ()))
    while stack:
        node_id, parent_path = stack.pop()
        spec = by_id[node_id]
        kids = sorted(children.get(node_id, []), key=lambda i: (keys[i], i))
        path = (*parent_path, spec.names[-1])
        own = spec.count - sum(by_id[kid].count for kid in kids)
        nodes.append(
            CategoryNode(
                node_id, spec.names[-1], path, spec.parent, len(path), tuple(kids), spec.count, own
            )
        )
        stack.extend((kid, path) for kid in reversed(kids))
    if len(nodes) != len(by_id):
        raise TaxonomyError("category parents form a cycle")
    return nodes


class CategoryTree:
    """An immutable category tree; iteration is pre-order with siblings sorted by normalised name."""

    def __init__(self, nodes: Iterable[CategoryNode], *, source: str = "custom") -> None:
        self.source = source
        self._nodes: dict[str, CategoryNode] = {}
        self._keys: dict[tuple[str, ...], str] = {}
        for node in nodes:
            if node.id in self._nodes:
                raise TaxonomyError(f"duplicate category id {node.id!r}")
            self._nodes[node.id] = node
            key = tuple(normalize_name(level) for level in node.path)
            if key not in self._keys or node.id < self._keys[key]:
                self._keys[key] = node.id
        for node in self._nodes.values():
            parent = self._nodes.get(node.parent) if node.parent is not None else None
            if node.parent is not None and (parent is None or node.id not in parent.children):
                raise TaxonomyError(f"category {node.id!r} and its parent {node.parent!r} disagree")
            if node.depth != len(node.path) or node.depth != (parent.depth + 1 if parent else 1):
                raise TaxonomyError(f"category {node.id!r} has an inconsistent depth or path")
        self._exclusive: dict[tuple[int, int], frozenset[str]] = {}

    # -- builders ------------------------------------------------------------------------------

    @classmethod
    def from_paths(
        cls,
        paths: Iterable[Sequence[str]],
        *,
        min_count: int = 5,
        min_root_count: int = 5,
        source: str = "paths",
    ) -> CategoryTree:
        """A tree of the (already cleaned) paths, pruned to nodes with enough products.

        A node survives when its subtree holds at least ``min_count`` products (a root: also
        ``min_root_count``) and its parent survives. Pass 1 for both to keep every node.
        """
        counts: Counter[tuple[str, ...]] = Counter()
        spellings: dict[tuple[str, ...], Counter[str]] = {}
        for levels in paths:
            key: tuple[str, ...] = ()
            for level in levels:
                shown = display_name(level)
                if not shown:
                    continue
                key = (*key, shown.casefold())
                counts[key] += 1
                spellings.setdefault(key, Counter())[shown] += 1
        names: dict[tuple[str, ...], str] = {}
        specs: list[_Spec] = []
        for key in sorted(counts, key=lambda k: (len(k), k)):
            floor = max(min_count, min_root_count) if len(key) == 1 else min_count
            if counts[key] < floor or (len(key) > 1 and key[:-1] not in names):
                continue
            names[key] = min(spellings[key].items(), key=lambda item: (-item[1], item[0]))[0]
            full = tuple(names[key[:i]] for i in range(1, len(key) + 1))
            parent = path_id(key[:-1]) if len(key) > 1 else None
            specs.append(_Spec(path_id(key), full, parent, counts[key]))
        return cls(_assemble(specs), source=source)

    @classmethod
    def from_google_taxonomy(cls, path: str | Path) -> CategoryTree:
        """Google's product taxonomy with ids (``"1 - Animals & Pet Supplies"``); ``#`` lines skipped."""
        specs: list[_Spec] = []
        ids: dict[tuple[str, ...], str] = {}
        for number, line in enumerate(_read_text(path).splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            match = _GOOGLE_LINE.match(line)
            if match is None:
                raise TaxonomyError(
                    f"{path}:{number}: expected 'ID - A > B > C', got {line[:80]!r}"
                )
            names = tuple(display_name(name) for name in _GOOGLE_SEP.split(match.group(2)))
            key = tuple(name.casefold() for name in names)
            parent = ids.get(key[:-1]) if len(key) > 1 else None
            if len(key) > 1 and parent is None:
                raise TaxonomyError(
                    f"{path}:{number}: parent of {match.group(2)!r} not listed before"
                )
            ids.setdefault(key, match.group(1))
            specs.append(_Spec(match.group(1), names, parent))
        return cls(_assemble(specs), source=f"google:{Path(path).name}")

    @classmethod
    def from_bestbuy(cls, path: str | Path) -> CategoryTree:
        """Best Buy's categories (``[{"id", "name", "path": [{"id", "name"}, ...]}, ...]``).

        Ancestors that appear only inside another category's ``path`` become nodes too; a missing
        name falls back to the id.
        """
        try:
            data = json.loads(_read_text(path))
        except ValueError as exc:
            raise TaxonomyError(f"{path}: not JSON: {exc}") from exc
        if not isinstance(data, list):
            raise TaxonomyError(f"{path}: expected a list of categories")
        specs: dict[str, _Spec] = {}
        for index, item in enumerate(data):
            steps = item.get("path") if isinstance(item, dict) else None
            if not isinstance(steps, list) or not steps:
                raise TaxonomyError(f"{path}: category #{index} has no 'path' list")
            names: tuple[str, ...] = ()
            parent: str | None = None
            for step in steps:
                if not isinstance(step, dict) or not isinstance(step.get("id"), str):
                    raise TaxonomyError(f"{path}: category #{index} has a bad path step {step!r}")
                node_id = step["id"]
                names = (*names, display_name(step.get("name") or "") or node_id)
                known = specs.setdefault(node_id, _Spec(node_id, names, parent))
                if known.parent != parent:
                    raise TaxonomyError(f"{path}: category {node_id!r} has two parents")
                parent = node_id
        return cls(_assemble(specs.values()), source=f"bestbuy:{Path(path).name}")

    # -- lookups -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[CategoryNode]:
        return iter(self._nodes.values())

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._nodes

    def __getitem__(self, node_id: str) -> CategoryNode:
        try:
            return self._nodes[node_id]
        except KeyError:
            raise TaxonomyError(f"unknown category id {node_id!r}") from None

    def get(self, node_id: str) -> CategoryNode | None:
        """The node with this id, or None."""
        return self._nodes.get(node_id)

    def roots(self) -> list[CategoryNode]:
        return [node for node in self._nodes.values() if node.parent is None]

    def nodes_at_depth(self, depth: int) -> list[CategoryNode]:
        return [node for node in self._nodes.values() if node.depth == depth]

    @property
    def max_depth(self) -> int:
        return max((node.depth for node in self._nodes.values()), default=0)

    def ancestors(self, node_id: str, *, include_self: bool = False) -> list[CategoryNode]:
        """Ancestors of a node, root first."""
        node = self[node_id]
        chain = [node] if include_self else []
        while node.parent is not None:
            node = self._nodes[node.parent]
            chain.append(node)
        return chain[::-1]

    def descendants(self, node_id: str) -> list[CategoryNode]:
        """Descendants of a node in pre-order (itself excluded)."""
        found: list[CategoryNode] = []
        stack = list(reversed(self[node_id].children))
        while stack:
            node = self._nodes[stack.pop()]
            found.append(node)
            stack.extend(reversed(node.children))
        return found

    def find_by_path(self, levels: Sequence[str]) -> CategoryNode | None:
        """The node whose path is exactly these levels (normalised), or None."""
        node_id = self._keys.get(tuple(normalize_name(level) for level in levels))
        return self._nodes[node_id] if node_id is not None and levels else None

    def path_nodes(self, levels: Sequence[str]) -> list[CategoryNode]:
        """The nodes along a path, root first, as far as the tree has them (pruned levels stop it)."""
        found: list[CategoryNode] = []
        key: tuple[str, ...] = ()
        for level in levels:
            key = (*key, normalize_name(level))
            node_id = self._keys.get(key)
            if node_id is None:
                break
            found.append(self._nodes[node_id])
        return found

    def deepest(self, levels: Sequence[str]) -> CategoryNode | None:
        """The node a product with this path attaches to: the deepest tree node on the path."""
        found = self.path_nodes(levels)
        return found[-1] if found else None

    def truncate(self, levels: Sequence[str], level: int) -> CategoryNode | None:
        """The node of the path cut at depth ``level`` (shallower where the tree stops earlier)."""
        return self.deepest(levels[:level])

    # -- exclusive subset ----------------------------------------------------------------------

    def _exclusive_ids(self, max_depth: int, min_count: int) -> frozenset[str]:
        if max_depth < 1 or min_count < 1:
            raise ValueError("max_depth and min_count must be at least 1")
        cached = self._exclusive.get((max_depth, min_count))
        if cached is not None:
            return cached
        chosen: set[str] = set()
        captured: dict[str, int] = {}
        for node in reversed([n for n in self._nodes.values() if n.depth <= max_depth]):
            below = sum(captured.get(kid, 0) for kid in node.children)
            if node.count - below >= min_count:
                chosen.add(node.id)
                captured[node.id] = node.count
            else:
                captured[node.id] = below
        result = frozenset(chosen)
        self._exclusive[(max_depth, min_count)] = result
        return result

    def exclusive_nodes(self, *, max_depth: int = 3, min_count: int = 5) -> list[CategoryNode]:
        """The exclusive nodes (see the module docstring), in tree order (sorted by path)."""
        chosen = self._exclusive_ids(max_depth, min_count)
        return [node for node in self._nodes.values() if node.id in chosen]

    def exclusive_target(
        self, levels: Sequence[str], *, max_depth: int = 3, min_count: int = 5
    ) -> str | None:
        """The id of the deepest exclusive node on a (cleaned) path, or None."""
        chosen = self._exclusive_ids(max_depth, min_count)
        hits = [node.id for node in self.path_nodes(levels) if node.id in chosen]
        return hits[-1] if hits else None

    # -- persistence ---------------------------------------------------------------------------

    def _content(self) -> dict[str, Any]:
        nodes = [
            {"id": n.id, "name": n.name, "parent": n.parent, "count": n.count}
            for n in self._nodes.values()
        ]
        return {"format": FORMAT, "source": self.source, "nodes": nodes}

    @functools.cached_property
    def version(self) -> str:
        """A content hash (ids, names, parents, counts, source): equal iff the JSON is equal."""
        canonical = json.dumps(self._content(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {**self._content(), "version": self.version}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=1)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CategoryTree:
        if data.get("format") != FORMAT:
            raise TaxonomyError(f"not a category tree (format {data.get('format')!r})")
        try:
            rows = {row["id"]: row for row in data["nodes"]}
            specs = [
                _Spec(row["id"], _names(rows, row["id"]), row["parent"], int(row["count"]))
                for row in data["nodes"]
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise TaxonomyError(f"malformed category tree: {exc!r}") from exc
        tree = cls(_assemble(specs), source=str(data.get("source", "custom")))
        if "version" in data and data["version"] != tree.version:
            raise TaxonomyError(f"category tree version {data['version']!r} does not match content")
        return tree

    @classmethod
    def from_json(cls, text: str) -> CategoryTree:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise TaxonomyError(f"category tree is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise TaxonomyError("category tree JSON must be an object")
        return cls.from_dict(data)


def _names(rows: Mapping[str, Mapping[str, Any]], node_id: str) -> tuple[str, ...]:
    names: list[str] = []
    current: str | None = node_id
    while current is not None:
        if len(names) > len(rows):
            raise TaxonomyError("category parents form a cycle")
        row = rows[current]
        names.append(str(row["name"]))
        current = row["parent"]
    return tuple(reversed(names))


def _read_text(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TaxonomyError(f"cannot read {path}: {exc}") from exc
