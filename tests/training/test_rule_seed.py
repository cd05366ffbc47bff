"""Rules from category names in any language: folding, stems, seeding, evaluation."""

from __future__ import annotations

import pytest

from prodcat.training.exceptions import RuleError
from prodcat.training.rule_seed import any_language_keywords, common_words, seed_any_language
from prodcat.training.rules import RuleEngine, evaluate_rules, fold, parse_rules, tokenize
from prodcat.training.taxonomy import CategoryTree

PATHS = [
    ["İçecekler", "Maden Suyu"],
    ["İçecekler", "Çay & Kahve"],
    ["Süt Ürünleri", "Peynir"],
    ["Getränke & Genussmittel", "Rotwein"],
    ["Frukt och grönt", "Äpplen"],
]


@pytest.fixture(scope="module")
def tree() -> CategoryTree:
    return CategoryTree.from_paths(PATHS, min_count=1, min_root_count=1)


def test_turkish_dotted_and_dotless_i_fold_to_one_letter() -> None:
    assert fold("İÇECEKLER") == fold("içecekler") == fold("IÇECEKLER") == "içecekler"
    assert fold("\u0131l\u0131k") == "ilik"  # dotless i
    assert tokenize("İçecekler ve Süt") == ("içecekler", "ve", "süt")
    assert tokenize("Straße") == ("strasse",)


def test_keywords_take_the_full_part_and_its_last_word() -> None:
    assert any_language_keywords("Maden Suyu", stems=False) == {"maden suyu", "suyu"}
    assert any_language_keywords("Çay & Kahve", stems=False) == {"çay", "kahve"}
    assert any_language_keywords("Çay & Kahve", stems=True) >= {"kahve*", "*kahve"}
    # one- and two-letter words and numbers never stand alone
    assert any_language_keywords("Öl 33 cl", stems=False) == {"öl 33 cl"}
    assert "och" not in any_language_keywords("Frukt och grönt", common=frozenset({"och"}))
    names = ["Frukt och grönt", "Ost och mejeri", "Bröd och kex", "Öl och vin", "Kött"]
    assert "och" in common_words(names, max_share=0.1)


def test_seeded_rules_match_inflected_and_compound_titles(tree: CategoryTree) -> None:
    engine = RuleEngine(seed_any_language(tree), tree)

    def paths(title: str) -> set[str]:
        return {" > ".join(tree[i].path) for i in engine.apply({"title": title})}

    # a Turkish suffix after a dotted capital I
    assert "Süt Ürünleri > Peynir" in paths("P\u0131nar Beyaz PEYNİRLERİ 500 g")
    assert "İçecekler > Maden Suyu" in paths("Uludağ maden suyu 6x200 ml")
    assert "Getränke & Genussmittel > Rotwein" in paths("Rotweine aus Italien")  # plural
    assert "Frukt och grönt > Äpplen" in paths("ÄPPLEN Royal Gala")
    assert paths("Schokolade") == set()


def test_stems_in_rules_files(tree: CategoryTree) -> None:
    rules = parse_rules(
        [{"category": "Süt Ürünleri > Peynir", "any_of": ["peynir*", "*peynir"]}], tree
    )
    engine = RuleEngine(rules, tree)
    assert engine.apply({"title": "Kaşar peynirli tost"})
    assert engine.apply({"title": "Beyazpeynir"})
    assert not engine.apply({"title": "peyn"})
    with pytest.raises(RuleError, match="stem"):
        parse_rules([{"category": "Süt Ürünleri", "contains": "pe*"}], tree)


def test_evaluate_seeded_rules_per_level(tree: CategoryTree) -> None:
    engine = RuleEngine(seed_any_language(tree), tree)
    products = [{"title": "Peynir"}, {"title": "Rotwein"}, {"title": "Kahve"}, {"title": "x"}]
    truth = [
        ["Süt Ürünleri", "Peynir"],
        ["Getränke & Genussmittel", "Rotwein"],
        ["Süt Ürünleri", "Peynir"],
        ["İçecekler", "Maden Suyu"],
    ]
    report = evaluate_rules(engine, products, truth, tree)
    assert report.coverage == pytest.approx(3 / 4)
    assert report.by_depth[2].tp == 2 and report.by_depth[2].fp == 1
    assert report.by_depth[1].precision == pytest.approx(2 / 3)
