"""The legacy keyword rule system: rules files, matching, seeding, evaluation."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from prodcat.training.dataset import Example, load_flipkart, tree_of_examples
from prodcat.training.exceptions import RuleError
from prodcat.training.rules import (
    DEMO_RULES,
    Rule,
    RuleEngine,
    dump_rules,
    evaluate_rules,
    load_rules,
    name_keywords,
    parse_rules,
    seed_rules,
)
from prodcat.training.taxonomy import CategoryTree

PATHS = [
    ["Clothing", "Women's Clothing", "Shorts"],
    ["Clothing", "Women's Clothing", "Shirts, Tops & Tunics", "Shirts"],
    ["Clothing", "Men's Clothing", "Shirts"],
    ["Clothing", "Men's Clothing", "T-Shirts"],
    ["Footwear", "Women's Footwear", "Flats"],
    ["Footwear", "Men's Footwear", "Casual Shoes"],
    ["Toys & School Supplies", "School Supplies", "School Bags"],
    ["Bags, Wallets & Belts", "Bags", "Backpacks"],
]


@pytest.fixture(scope="module")
def tree() -> CategoryTree:
    return CategoryTree.from_paths(PATHS, min_count=1, min_root_count=1)


def node_id(tree: CategoryTree, path: str) -> str:
    node = tree.find_by_path(path.split(" > "))
    assert node is not None, path
    return node.id


# -- rules files -------------------------------------------------------------------------------


def test_parse_rules(tree: CategoryTree) -> None:
    shorts = node_id(tree, "Clothing > Women's Clothing > Shorts")
    rules = parse_rules(
        [
            {"category": "clothing >  women's clothing > SHORTS", "contains": "shorts"},
            {"category": shorts, "any_of": ["hot pants"], "unless": "swim", "field": "any"},
            {"category": "Footwear", "regex": r"\bsandals?\b", "case_sensitive": True},
        ],
        tree,
    )
    assert [r.category for r in rules] == [shorts, shorts, node_id(tree, "Footwear")]
    assert rules[0].phrases == ("shorts",) and rules[0].field == "title"
    assert rules[1].unless == ("swim",) and rules[1].fields == (
        "title",
        "brand",
        "category",
        "description",
    )
    assert rules[2].regex == r"\bsandals?\b" and rules[2].case_sensitive
    assert parse_rules(None, tree) == []


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"category": "Clothing > Nope", "contains": "x"}, "rule #1: unknown category"),
        ({"category": "Clothing", "regex": "("}, "rule #1: bad regex"),
        ({"category": "Clothing", "contains": "x", "any_of": ["y"]}, "exactly one of"),
        ({"category": "Clothing"}, "exactly one of"),
        ({"category": "Clothing", "contains": "x", "colour": "red"}, "unknown keys colour"),
        ({"category": "Clothing", "contains": "x", "field": "price"}, "field must be one of"),
        ({"category": "Clothing", "any_of": []}, "non-empty string or list"),
        ({"category": "Clothing", "contains": "--"}, "holds no word"),
        ({"category": "Clothing", "contains": "x", "case_sensitive": "yes"}, "true or false"),
        ({"contains": "x"}, "'category' must be"),
        ("just a string", "rule #1: expected a mapping"),
    ],
)
def test_rule_validation_errors(tree: CategoryTree, rule: object, message: str) -> None:
    with pytest.raises(RuleError, match=message):
        parse_rules([{"category": "Clothing", "contains": "ok"}, rule], tree)


def test_rules_file_errors(tree: CategoryTree, tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("- category: Clothing\n  contains: [unclosed\n", encoding="utf-8")
    with pytest.raises(RuleError, match="not valid YAML"):
        load_rules(path, tree)
    path.write_text("category: Clothing\n", encoding="utf-8")
    with pytest.raises(RuleError, match="expected a list of rules"):
        load_rules(path, tree)
    with pytest.raises(RuleError, match="cannot read"):
        load_rules(tmp_path / "missing.yaml", tree)


def test_dump_and_load_round_trip(tree: CategoryTree, tmp_path: Path) -> None:
    rules = seed_rules(tree)
    path = tmp_path / "rules.yaml"
    dump_rules(rules, path, header="line one\n\nline two")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# line one\n#\n# line two\n- category: ")
    assert load_rules(path, tree) == rules


# -- matching ----------------------------------------------------------------------------------


def test_engine_emits_ancestors_and_matches_words(tree: CategoryTree) -> None:
    shorts = node_id(tree, "Clothing > Women's Clothing > Shorts")
    engine = RuleEngine(
        parse_rules([{"category": shorts, "any_of": ["shorts", "hot pants"]}], tree), tree
    )
    expected = {shorts, node_id(tree, "Clothing > Women's Clothing"), node_id(tree, "Clothing")}
    assert engine.apply({"title": "Alisha Solid Women's Cycling SHORTS"}) == expected
    assert engine.apply({"title": "Hot-Pants by X"}) == expected  # tokens, not characters
    assert engine.apply({"title": "Shortsleeve top"}) == set()  # whole words only
    assert engine.apply({"title": "hot summer pants"}) == set()  # phrases are contiguous
    assert engine.apply({"brand": "shorts"}) == set()  # title only by default
    assert engine.apply({}) == set()


def test_engine_fields_unless_case_and_regex(tree: CategoryTree) -> None:
    rules = parse_rules(
        [
            {"category": "Footwear", "field": "any", "contains": "flats", "unless": ["flat cap"]},
            {"category": "Footwear > Men's Footwear", "field": "brand", "contains": "Bata"},
            {"category": "Clothing", "contains": "TOP", "case_sensitive": True},
            {"category": "Bags, Wallets & Belts", "regex": r"back\s?packs?"},
            {"category": "Toys & School Supplies", "field": "category", "contains": "school"},
        ],
        tree,
    )
    engine = RuleEngine(rules, tree)
    footwear, clothing = node_id(tree, "Footwear"), node_id(tree, "Clothing")
    assert engine.apply({"title": "x", "description": "comfy flats"}) == {footwear}
    assert engine.apply({"title": "flats and a flat cap"}) == set()
    assert engine.apply({"title": "y", "brand": "bata"}) == {
        footwear,
        node_id(tree, "Footwear > Men's Footwear"),
    }
    assert engine.apply({"title": "Crop TOP"}) == {clothing}
    assert engine.apply({"title": "Crop top"}) == set()
    assert engine.apply({"title": "Wildcraft Backpack"}) == {node_id(tree, "Bags, Wallets & Belts")}
    toys = {node_id(tree, "Toys & School Supplies")}
    assert engine.apply({"title": "t", "category_path": ["School", "Bags"]}) == toys
    assert engine.apply({"title": "t", "category_text": "Kids > School"}) == toys
    example = Example("id", "Ballet flats", None, "School", ("School",), ())
    assert engine.apply(example) == {footwear} | toys  # attributes work too
    assert [r.category for r in engine.matches(example)] == [footwear, *toys]


def test_engine_rejects_unknown_category(tree: CategoryTree) -> None:
    with pytest.raises(RuleError, match="rule #0: unknown category"):
        RuleEngine([Rule("c_000000000000", ("x",))], tree)


# -- seeding -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "keywords"),
    [
        ("Shorts", {"shorts"}),
        ("Casual Shoes", {"casual shoe", "casual shoes"}),
        ("Lingerie, Sleep & Swimwear", {"lingerie", "lingeries", "sleep", "sleeps", "swimwear"}),
        ("Car & Bike Lighting", {"car lighting", "bike lighting"}),
        ("Helmets & Riding Gear", {"helmet", "helmets", "riding gear", "riding gears"}),
        ("Women's Footwear", {"footwear"}),
        ("Baby Bath Towels", {"baby bath towel", "baby bath towels"}),
        ("Women's Clothing", set()),
        ("Accessories & Combo Sets", set()),
        ("Watches", {"watch", "watches"}),
    ],
)
def test_name_keywords(name: str, keywords: set[str]) -> None:
    assert name_keywords(name) == keywords


def test_seed_rules_own_shared_keywords_by_common_ancestor(tree: CategoryTree) -> None:
    rules = {" > ".join(r.path): r for r in seed_rules(tree)}
    # "shirts" names nodes under men's and women's clothing: it only says "Clothing"
    assert {"shirt", "shirts"} <= set(rules["Clothing"].phrases)
    assert "Clothing > Men's Clothing > Shirts" not in rules
    assert rules["Clothing > Men's Clothing > T-Shirts"].phrases == ("t shirt", "t shirts")
    # "bags" is blocked by a longer keyword that belongs elsewhere
    bags = rules["Bags, Wallets & Belts"]
    assert "bags" in bags.phrases and "school bags" in bags.unless
    engine = RuleEngine(list(rules.values()), tree)
    assert node_id(tree, "Bags, Wallets & Belts") not in engine.apply({"title": "Kids School Bag"})
    # only the requested nodes get rules
    depth1 = seed_rules(tree, nodes=[n.id for n in tree.roots()])
    assert {r.path[0] for r in depth1} <= {n.name for n in tree.roots()}
    assert all(len(r.path) == 1 for r in depth1)


# -- evaluation --------------------------------------------------------------------------------


def test_evaluate_rules_hand_example() -> None:
    tree = CategoryTree.from_paths([["A", "B"], ["A", "C"], ["D"]], min_count=1, min_root_count=1)
    rules = parse_rules(
        [{"category": "A > B", "contains": "bee"}, {"category": "D", "contains": "dee"}], tree
    )
    products = [
        {"title": "bee thing"},
        {"title": "bee dee"},
        {"title": "nothing"},
        {"title": "dee"},
    ]
    truth = [["A", "B"], ["A", "C"], ["D"], ["D"]]
    report = evaluate_rules(RuleEngine(rules, tree), products, truth, tree)
    assert (report.overall.tp, report.overall.fp, report.overall.fn) == (4, 2, 2)
    assert report.overall.precision == pytest.approx(4 / 6)
    assert report.overall.recall == pytest.approx(4 / 6)
    assert report.overall.f1 == pytest.approx(4 / 6)
    assert report.by_depth[1].precision == pytest.approx(3 / 4)
    assert report.by_depth[1].recall == pytest.approx(3 / 4)
    assert report.by_depth[2].precision == pytest.approx(1 / 2)
    assert report.by_depth[2].recall == pytest.approx(1 / 2)
    assert report.coverage == pytest.approx(3 / 4)
    rows = [(c.path, c.support, c.predicted, c.tp) for c in report.per_category]
    assert rows == [("A", 2, 2, 2), ("D", 2, 2, 1), ("A > B", 1, 2, 1), ("A > C", 1, 0, 0)]
    assert "coverage 0.750" in report.format()
    with pytest.raises(RuleError):
        evaluate_rules(RuleEngine(rules, tree), products, truth[:2], tree)


def test_flipkart_rules_file_is_precise_but_incomplete(data_dir: Path) -> None:
    examples = load_flipkart(data_dir)
    tree = tree_of_examples(examples)
    rules = load_rules(DEMO_RULES, tree)
    assert 150 <= len(rules) <= 400
    seeded = seed_rules(tree, nodes=[n.id for n in tree if n.depth <= 3])
    assert rules == seeded  # the committed file is what the seeder writes
    engine = RuleEngine(rules, tree)
    started = time.perf_counter()
    for example in examples:
        engine.apply(example)
    assert time.perf_counter() - started < 2.0
    report = evaluate_rules(engine, examples, [e.path for e in examples], tree)
    assert report.overall.precision > 0.8
    assert 0.15 < report.overall.recall < 0.5
    assert 0.3 < report.coverage < 0.7
    assert report.by_depth[1].precision > report.by_depth[3].precision > 0.6
