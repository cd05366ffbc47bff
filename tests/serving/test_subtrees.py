"""Subtree ids: path ids pass through; taxonomy node ids become the path id of their node."""

from __future__ import annotations

from pathlib import Path

from prodcat.core.errors import ProdcatError
from prodcat.core.ids import path_id
from prodcat.serving.subtrees import SubtreeIds
from prodcat.training.taxonomy import CategoryTree


def _tree(tmp_path: Path, lines: list[str]) -> CategoryTree:
    path = tmp_path / f"t{len(lines)}.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return CategoryTree.from_google_taxonomy(path)


def test_node_ids_resolve_through_the_live_tree(tmp_path: Path) -> None:
    first = _tree(tmp_path, ["1 - Apparel", "2 - Apparel > Shoes"])
    second = _tree(tmp_path, ["1 - Apparel", "2 - Apparel > Shoes", "3 - Apparel > Bags"])
    answers: list[CategoryTree | Exception] = [first, ProdcatError("broker down"), second]
    now = [0.0]

    def taxonomy() -> CategoryTree | None:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    ids = SubtreeIds(taxonomy, clock=lambda: now[0], check_s=60)
    assert ids.resolve("2") == path_id(["Apparel", "Shoes"])
    assert ids.resolve("3") is None
    assert ids.resolve("c_0123456789ab") == "c_0123456789ab"  # a path id needs no tree
    now[0] = 61  # the re-read fails: the tree it had is kept
    assert ids.resolve("2") == path_id(["Apparel", "Shoes"]) and ids.resolve("3") is None
    now[0] = 122
    assert ids.resolve("3") == path_id(["Apparel", "Bags"])
    assert answers == []


def test_without_a_taxonomy_only_path_ids_resolve() -> None:
    ids = SubtreeIds()
    assert ids.resolve("c_0123456789ab") == "c_0123456789ab"
    assert ids.resolve("166") is None
