"""``prodcat taxonomy import|show|derive|diff``: the managed category tree (docs/taxonomy.md).

* ``import [FILE]``: read a taxonomy file (default ``PRODCAT_TAXONOMY__SOURCE``) and store it as
  the live version on the ``taxonomy`` topic;
* ``show [--depth N]``: the live tree (``*`` marks the exclusive subset);
* ``derive --from FILE|topic``: a tree of the category paths of a labelled file (a truth file,
  JSON lines or CSV of products) or of ``products.normalized``; stored, or written with ``--out``;
* ``diff V1 V2``: what changed between two stored versions (sequence numbers or version hashes).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prodcat.core.settings import Settings
from prodcat.streams.taxonomy_store import (
    configured_source,
    find_version,
    publish_taxonomy,
    read_taxonomies,
)
from prodcat.training.exceptions import TaxonomyError
from prodcat.training.taxonomy import CategoryTree
from prodcat.training.taxonomy_files import (
    category_paths,
    derive_tree,
    diff_trees,
    format_tree,
    read_taxonomy_file,
    split_path,
)

__all__ = ["derive_taxonomy", "diff_taxonomy", "import_taxonomy", "show_taxonomy"]

#: ``derive --from topic``: the category paths of the live products.
TOPIC: str = "topic"


def _stored_line(tree: CategoryTree, sequence: int, written: bool) -> str:
    state = "stored as" if written else "already live as"
    return f"{len(tree)} nodes, depth {tree.max_depth}, {state} v{sequence} {tree.version}"


def import_taxonomy(settings: Settings, file: Path | None, format: str | None = None) -> str:
    """Store the tree of ``file`` (default: the configured source) as the live version."""
    if file is None:
        tree = configured_source(settings)
        if tree is None:
            raise TaxonomyError("give a FILE or set PRODCAT_TAXONOMY__SOURCE")
        file = settings.taxonomy.source
    else:
        tree = read_taxonomy_file(file, format or settings.taxonomy.format)
    stored, written = publish_taxonomy(settings, tree, reason=f"import {file}")
    return f"{tree.source}: {_stored_line(tree, stored.sequence, written)}"


def show_taxonomy(settings: Settings, depth: int | None = None) -> str:
    """The live tree, indented, with ids, counts and the exclusive subset."""
    stored = read_taxonomies(settings)
    if not stored:
        raise TaxonomyError(
            f"topic {settings.topics.taxonomy} holds no taxonomy: `prodcat taxonomy import FILE`"
        )
    live = stored[-1]
    head = (
        f"v{live.sequence} {live.version} from {live.tree.source} ({live.reason or 'no reason'}): "
        f"{len(live.tree)} nodes, depth {live.tree.max_depth}, {len(live.exclusive)} exclusive "
        f"(max depth {live.exclusive_max_depth}, min count {live.exclusive_min_count})"
    )
    return head + "\n" + format_tree(live.tree, depth=depth, exclusive=live.exclusive)


def _topic_paths(settings: Settings, field: str) -> Iterator[list[str]]:
    from prodcat.streams.label_commands import live_products

    for product in live_products(settings).values():
        yield split_path(product.get(field))


def derive_taxonomy(
    settings: Settings,
    source: str,
    *,
    field: str | None = None,
    min_count: int = 1,
    out: Path | None = None,
) -> str:
    """A tree of category paths (``source`` a file or ``topic``); stored unless ``out`` is given.

    ``out`` gets the tree JSON (``format: tree-json``, what ``PRODCAT_TAXONOMY__SOURCE`` and
    ``taxonomy import`` read)."""
    if source == TOPIC:
        paths = _topic_paths(settings, field or "category_path")
        name = f"derived:{settings.topics.normalized}"
    else:
        paths = category_paths(Path(source), field=field)
        name = f"derived:{Path(source).name}"
    tree = derive_tree(paths, min_count=min_count, source=name)
    if out is not None:
        out.write_text(tree.to_json() + "\n", encoding="utf-8")
        return f"{name}: {len(tree)} nodes, depth {tree.max_depth}, version {tree.version} -> {out}"
    stored, written = publish_taxonomy(settings, tree, reason=f"derive {source}")
    return f"{name}: {_stored_line(tree, stored.sequence, written)}"


def diff_taxonomy(settings: Settings, old: str, new: str, *, limit: int = 50) -> str:
    """What changed from stored version ``old`` to ``new``."""
    stored = read_taxonomies(settings)
    return diff_trees(find_version(stored, old).tree, find_version(stored, new).tree).format(limit)
