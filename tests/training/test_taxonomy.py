"""Category trees: Flipkart paths (noise cleaning, pruning, stable ids), taxonomy files, JSON."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from prodcat.training.dataset import Example, parse_flipkart_tree, tree_of_examples
from prodcat.training.exceptions import TaxonomyError
from prodcat.training.taxonomy import (
    CategoryTree,
    clean_path,
    normalize_name,
    path_id,
)


@pytest.fixture(scope="module")
def tree(examples: list[Example]) -> CategoryTree:
    return tree_of_examples(examples)


def by_title(examples: list[Example], title: str) -> Example:
    return next(e for e in examples if e.title == title)


# -- parsing and cleaning ----------------------------------------------------------------------


def test_parse_flipkart_tree() -> None:
    text = '["Clothing >> Women\'s Clothing >>  Lingerie, Sleep & Swimwear >> Shorts"]'
    assert parse_flipkart_tree(text) == [
        "Clothing",
        "Women's Clothing",
        "Lingerie, Sleep & Swimwear",
        "Shorts",
    ]
    assert parse_flipkart_tree("Footwear >> Flats") == ["Footwear", "Flats"]
    assert parse_flipkart_tree('["Footwear >> Flats ...') == ["Footwear", "Flats ..."]
    assert parse_flipkart_tree("[]") == []
    assert parse_flipkart_tree("") == []


def test_normalize_name() -> None:
    assert normalize_name("  Women\u2019s   CLOTHING ") == "women's clothing"
    assert normalize_name("Sofa Bed (Finish Colo...") == "sofa bed (finish colo"
    assert normalize_name("Sofa Bed…") == "sofa bed"


@pytest.mark.parametrize(
    ("title", "cleaned"),
    [
        # "<brand> <parent>" level, then the title itself
        (
            "Alisha Solid Women's Cycling Shorts",
            ("Clothing", "Women's Clothing", "Lingerie, Sleep & Swimwear", "Shorts"),
        ),
        # a truncated title
        (
            "FabHomeDecor Fabric Double Sofa Bed",
            ("Furniture", "Living Room Furniture", "Sofa Beds & Futons"),
        ),
        # the title exactly
        ("AW Bellies", ("Footwear", "Women's Footwear", "Ballerinas")),
        # the title with details
        (
            "Prime Printed 6 Seater Table Cover",
            ("Home Furnishing", "Kitchen & Dining Linen", "Table Covers"),
        ),
        # a brand level whose brand column is wrong ("Black"): the title starts with the prefix
        (
            "Vaishna Fashion Women's Full Coverage Bra",
            ("Clothing", "Women's Clothing", "Lingerie, Sleep & Swimwear", "Bras"),
        ),
        # a category word inside the title is not the title
        ("Shoe Bazar Women Wedges", ("Footwear", "Women's Footwear", "Wedges")),
        # a spurious root that is just the product name
        ("Dressberry Green Synthetic  Clutch", ()),
    ],
)
def test_clean_path_on_real_rows(examples: list[Example], title: str, cleaned: tuple[str, ...]):
    example = by_title(examples, title)
    assert example.path == cleaned
    assert clean_path(example.raw_path, example.title, example.brand) == list(cleaned)
    assert len(example.raw_path) > len(cleaned) or title == "Shoe Bazar Women Wedges"


def test_clean_path_rules() -> None:
    levels = ["Watches", "Wrist Watches", "Fastrack Wrist Watches"]
    assert clean_path(levels, "Fastrack 3062 Analog Watch", "Fastrack") == levels[:2]
    # a real subcategory ending in its parent's name is kept ("Formal Shirts" under "Shirts")
    shirts = ["Clothing", "Men's Clothing", "Shirts", "Formal Shirts"]
    assert clean_path(shirts, "KRiSS Men's Solid Formal Shirt", "KRiSS") == shirts
    # without a title only truncated levels go
    assert clean_path(["Furniture", "Sofa Bed (Finish Colo..."]) == ["Furniture"]
    assert clean_path(["  Home   Furnishing ", ""]) == ["Home Furnishing"]
    # a long title prefix goes, a short one stays
    assert clean_path(["Toys", "Funskool Giant Lego Blocks"], "Funskool Giant Lego Blocks Set")
    assert clean_path(["Toys", "Blocks"], "Blocks Set") == ["Toys", "Blocks"]


# -- trees from Flipkart paths -----------------------------------------------------------------


def test_raw_flipkart_tree_matches_data_readme(examples: list[Example]) -> None:
    raw = CategoryTree.from_paths(e.raw_path for e in examples)
    assert [len(raw.nodes_at_depth(k)) for k in (1, 2, 3)] == [34, 117, 253]


def test_clean_flipkart_tree(examples: list[Example], tree: CategoryTree) -> None:
    counts = [len(tree.nodes_at_depth(k)) for k in range(1, 7)]
    assert counts[:3] == [28, 117, 208]  # brand levels and product-name roots are gone
    assert 550 <= len(tree) <= 650
    assert {"Clothing", "Jewellery", "Footwear", "Watches"} <= {r.name for r in tree.roots()}
    assert sum(root.count for root in tree.roots()) == sum(
        1 for e in examples if tree.deepest(e.path) is not None
    )
    unplaced = sum(1 for e in examples if tree.deepest(e.path) is None)
    assert 250 <= unplaced <= 400  # ~1.7%: empty after cleaning or in a root with < 5 products
    for node in tree:
        assert node.count >= 5
        assert node.own_count == node.count - sum(tree[c].count for c in node.children)
        assert node.depth == len(node.path)


def test_ids_are_stable(examples: list[Example], tree: CategoryTree) -> None:
    paths = [e.path for e in examples]
    shuffled = paths[:]
    random.Random(7).shuffle(shuffled)
    again = CategoryTree.from_paths(shuffled, source="flipkart")
    assert [n.id for n in again] == [n.id for n in tree]
    assert again.version == tree.version
    # an id does not depend on which other products exist
    few = CategoryTree.from_paths(paths[:50], min_count=1, min_root_count=1)
    for node in few:
        if node.id in tree:
            assert tree[node.id].key == node.key
    shorts = tree.find_by_path(["clothing", "WOMEN'S  clothing", "Lingerie, Sleep & Swimwear"])
    assert shorts is not None
    key = "clothing>women's clothing>lingerie, sleep & swimwear"
    assert shorts.id == "c_" + hashlib.sha1(key.encode()).hexdigest()[:12]
    assert shorts.id == path_id(shorts.path)


def test_display_name_is_majority_spelling() -> None:
    tree = CategoryTree.from_paths(
        [["Home", "bed linen"], ["Home", "Bed Linen"], ["home", "Bed  Linen"]],
        min_count=1,
        min_root_count=1,
    )
    (root,) = tree.roots()
    assert root.name == "Home"
    assert tree[root.children[0]].name == "Bed Linen"
    assert tree[root.children[0]].count == 3


# -- hand-made tree ----------------------------------------------------------------------------

HAND = (
    [["A", "B"]] * 3
    + [["A", "C"]]
    + [["A"]] * 2
    + [["A", "D", "E"]] * 2
    + [["A", "D", "F"]]
    + [["Z"]]
)


def test_ancestors_descendants_and_lookups() -> None:
    tree = CategoryTree.from_paths(HAND, min_count=1, min_root_count=1)
    e = tree.find_by_path(["a", "d", "e"])
    assert e is not None
    assert [n.name for n in tree.ancestors(e.id)] == ["A", "D"]
    assert [n.name for n in tree.ancestors(e.id, include_self=True)] == ["A", "D", "E"]
    a = tree.find_by_path(["A"])
    assert a is not None
    assert [n.name for n in tree.descendants(a.id)] == ["B", "C", "D", "E", "F"]
    assert [n.name for n in tree.roots()] == ["A", "Z"]
    assert [n.name for n in tree.nodes_at_depth(3)] == ["E", "F"]
    assert len(tree) == 7 and len(list(tree)) == 7
    assert a.count == 9 and a.own_count == 2
    truncated = tree.truncate(["A", "D", "E"], 2)
    assert truncated is not None and truncated.name == "D"
    assert tree.find_by_path(["A", "X"]) is None
    deepest = tree.deepest(["A", "D", "X"])
    assert deepest is not None and deepest.name == "D"
    assert tree.get("nope") is None
    with pytest.raises(TaxonomyError, match="unknown category"):
        tree["nope"]


def test_pruning_attaches_products_to_surviving_ancestor() -> None:
    tree = CategoryTree.from_paths(HAND, min_count=2, min_root_count=2)
    assert [n.name for n in tree] == ["A", "B", "D", "E"]
    a = tree.find_by_path(["A"])
    d = tree.find_by_path(["A", "D"])
    assert a is not None and d is not None
    assert a.own_count == 3  # two of its own + C's product
    assert d.own_count == 1  # F's product
    assert tree.deepest(["A", "C"]) == a
    assert tree.deepest(["Z"]) is None  # root with < 2 products
    strict_roots = CategoryTree.from_paths(HAND, min_count=1, min_root_count=10)
    assert [n.name for n in strict_roots.roots()] == []


def test_exclusive_subset_with_internal_node() -> None:
    tree = CategoryTree.from_paths(HAND, min_count=1, min_root_count=1)
    nodes = tree.exclusive_nodes(max_depth=2, min_count=2)
    # B (3) and D (3, children beyond depth 2) are exclusive; C (1) is not, so A keeps its own
    # two products plus C's: 3 >= 2 -> A is exclusive, meaning "A, none of my children".
    assert [n.name for n in nodes] == ["A", "B", "D"]
    target = {tuple(p): tree.exclusive_target(p, max_depth=2, min_count=2) for p in HAND}
    names = {k: tree[v].name if v else None for k, v in target.items()}
    assert names == {
        ("A", "B"): "B",
        ("A", "C"): "A",
        ("A",): "A",
        ("A", "D", "E"): "D",
        ("A", "D", "F"): "D",
        ("Z",): None,
    }
    # with a higher bar only A is left; it then takes everything
    assert [n.name for n in tree.exclusive_nodes(max_depth=2, min_count=4)] == ["A"]
    # A has nothing of its own left over once all children are exclusive
    assert [n.name for n in tree.exclusive_nodes(max_depth=3, min_count=1)] == [
        "A",
        "B",
        "C",
        "E",
        "F",
        "Z",
    ]
    with pytest.raises(ValueError):
        tree.exclusive_nodes(max_depth=0, min_count=1)


def test_exclusive_subset_on_flipkart(examples: list[Example], tree: CategoryTree) -> None:
    for max_depth, min_count, size in [(2, 5, 128), (3, 5, 286), (3, 20, 149)]:
        nodes = tree.exclusive_nodes(max_depth=max_depth, min_count=min_count)
        assert len(nodes) == size
        assert all(n.depth <= max_depth for n in nodes)
        assert any(n.children and n.depth < max_depth for n in nodes)  # internal ones exist
        keys = [n.key for n in nodes]
        assert keys == sorted(keys, key=lambda k: k.split(">"))  # stable class order
        targets: dict[str | None, int] = {}
        for e in examples:
            t = tree.exclusive_target(e.path, max_depth=max_depth, min_count=min_count)
            targets[t] = targets.get(t, 0) + 1
        # every exclusive node gets at least min_count products; nothing else is a target
        assert set(targets) - {None} == {n.id for n in nodes}
        assert min(v for k, v in targets.items() if k is not None) >= min_count
        assert targets.get(None, 0) < 0.025 * len(examples)


# -- taxonomy files and persistence ------------------------------------------------------------


def test_google_taxonomy(data_dir: Path) -> None:
    tree = CategoryTree.from_google_taxonomy(
        data_dir / "taxonomy" / "google_product_taxonomy_2021-09-21.txt"
    )
    assert len(tree) == 5595
    assert len(tree.roots()) == 21 and tree.max_depth == 7
    assert tree["1"].name == "Animals & Pet Supplies"
    node = tree.find_by_path(["animals & pet supplies", "live animals"])
    assert node is not None and node.id == "3237" and node.parent == "1"
    assert [n.id for n in tree.ancestors("3")] == ["1", "2"]


def test_bestbuy_taxonomy(data_dir: Path) -> None:
    tree = CategoryTree.from_bestbuy(data_dir / "taxonomy" / "bestbuy_categories.json")
    # 4,584 listed categories plus 139 ancestors that appear only inside their paths
    assert len(tree) == 4584 + 139
    assert tree.max_depth == 6
    assert tree["abcat0010000"].name == "Gift Ideas"
    assert tree["pcmcat748300293073"].name == "pcmcat748300293073"  # listed without a name


def test_taxonomy_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "google.txt"
    bad.write_text("# header\n1 - A\n2 - A > B > C\n", encoding="utf-8")
    with pytest.raises(TaxonomyError, match=r"google.txt:3: parent"):
        CategoryTree.from_google_taxonomy(bad)
    bad.write_text("no id here\n", encoding="utf-8")
    with pytest.raises(TaxonomyError, match="expected 'ID - A > B > C'"):
        CategoryTree.from_google_taxonomy(bad)
    with pytest.raises(TaxonomyError, match="cannot read"):
        CategoryTree.from_bestbuy(tmp_path / "missing.json")


def test_json_round_trip(tree: CategoryTree, data_dir: Path) -> None:
    text = tree.to_json()
    again = CategoryTree.from_json(text)
    assert list(again) == list(tree)
    assert again.version == tree.version and again.source == "flipkart"
    assert again.exclusive_nodes() == tree.exclusive_nodes()
    google = CategoryTree.from_google_taxonomy(
        data_dir / "taxonomy" / "google_product_taxonomy_2021-09-21.txt"
    )
    assert list(CategoryTree.from_json(google.to_json())) == list(google)
    tampered = text.replace('"count": 6198', '"count": 6199', 1)
    assert tampered != text
    with pytest.raises(TaxonomyError, match="does not match"):
        CategoryTree.from_json(tampered)
    with pytest.raises(TaxonomyError, match="not a category tree"):
        CategoryTree.from_json('{"format": "other"}')
    with pytest.raises(TaxonomyError, match="not JSON"):
        CategoryTree.from_json("{")
