"""Taxonomy changes on trees: ids follow the tree's scheme, unchanged nodes keep theirs, counts
move with the products, and changes that do not fit are refused with what to do."""

from __future__ import annotations

import pytest

from prodcat.core.ids import path_id
from prodcat.training.exceptions import TaxonomyError
from prodcat.training.taxonomy import CategoryNode, CategoryTree, _assemble, _Spec
from prodcat.training.taxonomy_changes import Change, apply_change, remap_ids, resolve_change

PATHS = [
    ("Clothing", "Women", "Shorts"),
    ("Clothing", "Women", "Skirts"),
    ("Clothing", "Men", "Shorts"),
    ("Clothing", "Men", "Shirts"),
    ("Footwear", "Women", "Sandals"),
]


def _tree() -> CategoryTree:
    return CategoryTree.from_paths([p for p in PATHS for _ in range(3)], min_count=1,
                                   min_root_count=1)  # fmt: skip


def _id(*path: str) -> str:
    return path_id(path)


def _unchanged(before: CategoryTree, after: CategoryTree, changed: set[str]) -> None:
    for node in before:
        if node.id not in changed:
            assert after[node.id].path == node.path


def test_rename_re_identifies_the_path_id_subtree_and_keeps_the_rest() -> None:
    tree = _tree()
    women = _id("Clothing", "Women")
    applied = apply_change(tree, Change("rename", women, name="Ladies"))
    assert applied.ids == {
        women: _id("Clothing", "Ladies"),
        _id("Clothing", "Women", "Shorts"): _id("Clothing", "Ladies", "Shorts"),
        _id("Clothing", "Women", "Skirts"): _id("Clothing", "Ladies", "Skirts"),
    }
    assert applied.after[_id("Clothing", "Ladies", "Skirts")].path == (
        "Clothing",
        "Ladies",
        "Skirts",
    )
    assert applied.moved == set(applied.ids.values())
    _unchanged(tree, applied.after, set(applied.ids))
    assert applied.after[_id("Clothing")].count == tree[_id("Clothing")].count == 12


def test_own_ids_stay_on_rename_and_move() -> None:
    specs = [_Spec("1", ("Apparel",), None, 4), _Spec("2", ("Apparel", "Shoes"), "1", 2),
             _Spec("3", ("Apparel", "Bags"), "1", 2), _Spec("9", ("Home",), None, 1)]  # fmt: skip
    tree = CategoryTree(_assemble(specs), source="google")
    renamed = apply_change(tree, Change("rename", "2", name="Footwear"))
    assert renamed.ids == {} and renamed.moved == {"2"}
    assert renamed.after["2"].path == ("Apparel", "Footwear")
    moved = apply_change(tree, Change("move", "3", parent="9"))
    assert moved.ids == {} and moved.after["3"].path == ("Home", "Bags")
    assert (moved.after["1"].count, moved.after["9"].count) == (2, 3)  # counts follow the node


def test_merge_maps_the_node_and_merges_children_with_the_same_name() -> None:
    tree = _tree()
    men, women = _id("Clothing", "Men"), _id("Clothing", "Women")
    applied = apply_change(tree, Change("merge", men, into=women))
    assert applied.ids == {
        men: women,
        _id("Clothing", "Men", "Shorts"): _id("Clothing", "Women", "Shorts"),  # merged by name
        _id("Clothing", "Men", "Shirts"): _id("Clothing", "Women", "Shirts"),  # moved under
    }
    after = applied.after
    assert men not in after and after[women].count == 12
    assert after[_id("Clothing", "Women", "Shorts")].count == 6
    assert [n.name for n in after.descendants(women)] == ["Shirts", "Shorts", "Skirts"]
    _unchanged(tree, after, set(applied.ids))
    assert remap_ids([men, _id("Footwear"), women], applied.ids) == [women, _id("Footwear")]


def test_split_adds_children_and_maps_nothing() -> None:
    tree = _tree()
    sandals = _id("Footwear", "Women", "Sandals")
    applied = apply_change(tree, Change("split", sandals, parts=("Flat", "Heeled")))
    assert applied.ids == {}
    assert set(applied.added) == {_id("Footwear", "Women", "Sandals", "Flat"),
                                  _id("Footwear", "Women", "Sandals", "Heeled")}  # fmt: skip
    assert set(applied.after[sandals].children) == set(applied.added)
    assert len(applied.after) == len(tree) + 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (Change("rename", _id("Clothing", "Men"), name="Women"), "merge them instead"),
        (Change("move", _id("Clothing"), parent=_id("Clothing", "Men")), "its own subtree"),
        (Change("move", _id("Footwear", "Women"), parent=_id("Clothing")), "merge"),
        (Change("merge", _id("Clothing"), into=_id("Clothing", "Men")), "its own subtree"),
        (Change("split", _id("Footwear"), parts=("One",)), "two or more"),
        (Change("rename", "c_000000000000", name="X"), "not a node"),
    ],
)
def test_changes_that_do_not_fit_are_refused(change: Change, message: str) -> None:
    with pytest.raises(TaxonomyError, match=message):
        apply_change(_tree(), change)


def test_the_command_line_may_name_nodes_by_path() -> None:
    tree = _tree()
    change = resolve_change(tree, Change("merge", "Clothing > Men", into="clothing > women"))
    assert (change.node, change.into) == (_id("Clothing", "Men"), _id("Clothing", "Women"))
    with pytest.raises(TaxonomyError, match="taxonomy show"):
        resolve_change(tree, Change("rename", "Toys > Cars", name="X"))


def test_a_change_round_trips_as_json() -> None:
    change = Change("split", "c_1", parts=("A", "B"), by="ops", at=5)
    assert Change.from_dict(change.to_dict()) == change
    assert isinstance(_tree()[_id("Clothing")], CategoryNode)
