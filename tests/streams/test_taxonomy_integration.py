"""The taxonomy through a real broker: ``prodcat taxonomy import`` → the ``taxonomy`` topic →
:func:`load_taxonomy` → label validation that accepts the tree's nodes and nothing else; versions,
``show`` and ``diff``; ``labels rules`` with rules seeded from the stored tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from prodcat.cli import main
from prodcat.core.settings import ServingSettings, Settings, TaxonomySettings
from prodcat.schemas.serde import serde_for
from prodcat.streams.label_commands import vocabulary_of
from prodcat.streams.readback import read_topics
from prodcat.streams.taxonomy_store import load_taxonomy, read_taxonomies
from prodcat.streams.worker_process import worker_env
from prodcat.training.exceptions import TaxonomyError
from prodcat.training.labels import LabelError, validate_label
from tests.streams.kafka_io import produce

pytestmark = [pytest.mark.integration]

GOOGLE = """# Google_Product_Taxonomy_Version: 2021-09-21
1 - Animals & Pet Supplies
3237 - Animals & Pet Supplies > Live Animals
2 - Animals & Pet Supplies > Pet Supplies
3 - Animals & Pet Supplies > Pet Supplies > Bird Supplies
7 - Food, Beverages & Tobacco
8 - Food, Beverages & Tobacco > Beverages
9 - Food, Beverages & Tobacco > Beverages > Coffee
"""


@pytest.fixture
def settings(
    pipeline_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """The pipeline's settings, also in the environment (the CLI builds its own), no model."""
    settings = pipeline_settings.model_copy(
        update={
            "serving": ServingSettings(model_base=tmp_path / "models"),
            "taxonomy": TaxonomySettings(rules=tmp_path / "rules.yaml"),
        }
    )
    for name, value in worker_env(settings).items():
        if name.startswith("PRODCAT_"):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("PRODCAT_SERVING__MODEL_BASE", str(tmp_path / "models"))
    monkeypatch.setenv("PRODCAT_TAXONOMY__RULES", str(tmp_path / "rules.yaml"))
    return settings


def test_import_load_and_validate(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(TaxonomyError, match="prodcat taxonomy import"):
        load_taxonomy(settings)
    google = tmp_path / "google.txt"
    google.write_text(GOOGLE, encoding="utf-8")

    assert main(["taxonomy", "import", str(google)]) == 0
    assert "7 nodes, depth 3, stored as v1" in capsys.readouterr().out
    assert main(["taxonomy", "import", str(google)]) == 0
    assert "already live as v1" in capsys.readouterr().out

    tree = load_taxonomy(settings)
    assert tree.source == "google:google.txt" and "9" in tree
    vocabulary = vocabulary_of(settings)
    label = {"product_id": "p1", "objective": "exclusive", "category_ids": ["9"]}
    assert validate_label(label, vocabulary)["category_ids"] == ["9"]
    with pytest.raises(LabelError, match="unknown_category"):
        validate_label({**label, "category_ids": ["c_0123456789ab"]}, vocabulary)

    # a second version: a rename keeps its id, a new node is added; both versions stay readable
    google.write_text(GOOGLE.replace("> Coffee", "> Coffee & Tea") + "10 - Toys\n", "utf-8")
    assert main(["taxonomy", "import", str(google)]) == 0
    assert "stored as v2" in capsys.readouterr().out
    assert [s.sequence for s in read_taxonomies(settings)] == [1, 2]
    assert load_taxonomy(settings)["9"].name == "Coffee & Tea"
    assert main(["taxonomy", "diff", "1", "2"]) == 0
    out = capsys.readouterr().out
    assert "1 added, 0 removed, 1 renamed" in out and "+ 10  Toys" in out
    assert main(["taxonomy", "show", "--depth", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("v2 ") and "Toys  10" in out and "Coffee" not in out


def test_derive_seed_and_rule_labels(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truth = tmp_path / "shop.truth.jsonl"
    truth.write_text(
        '{"row": 0, "path": ["Süt Ürünleri", "Peynir"]}\n'
        '{"row": 1, "path": ["İçecekler", "Maden Suyu"]}\n',
        encoding="utf-8",
    )
    assert main(["taxonomy", "derive", "--from", str(truth)]) == 0
    assert "stored as v1" in capsys.readouterr().out
    assert main(["rules", "seed"]) == 0
    assert "rules to" in capsys.readouterr().out
    products = serde_for("Product")
    base = {
        "feed": "shop", "source_id": None, "brand": None, "category_path": [],
        "description": None, "gender": None, "sizes": [], "price": None, "list_price": None,
        "image_urls": [], "product_url": None, "retailer": None, "attributes": {},
        "profile_version": None, "content_hash": "0", "seen_at": 0,
    }  # fmt: skip
    rows = [("a", "Beyaz PEYNİRİ 500 g"), ("b", "Uludağ maden suyu"), ("c", "Lego")]
    produce(
        settings,
        settings.topics.normalized,
        [
            (pid.encode(), products.encode({**base, "product_id": pid, "title": title}))
            for pid, title in rows
        ],
    )
    assert main(["labels", "rules"]) == 0
    assert "published 2 labels" in capsys.readouterr().out
    labels = serde_for("Label")
    found = {
        record["product_id"]: record["category_ids"]
        for record in (
            labels.decode(r.value or b"")
            for r in read_topics(settings.kafka, [settings.topics.labels], expected=2)
        )
    }
    tree = load_taxonomy(settings)
    assert {" > ".join(tree[i].path) for i in found["a"]} == {
        "Süt Ürünleri",
        "Süt Ürünleri > Peynir",
    }
    assert "c" not in found


def test_change_commands_rename_merge_and_list(
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``prodcat taxonomy rename|merge|split|changes`` through the CLI: a dry run writes nothing;
    a rename and a merge store new versions and rewrite the rules; ``changes`` lists them."""
    truth = tmp_path / "shop.truth.jsonl"
    truth.write_text(
        '{"row": 0, "path": ["Süt Ürünleri", "Peynir"]}\n'
        '{"row": 1, "path": ["İçecekler", "Maden Suyu"]}\n'
        '{"row": 2, "path": ["İçecekler", "Meyve Suyu"]}\n',
        encoding="utf-8",
    )
    assert main(["taxonomy", "derive", "--from", str(truth)]) == 0
    assert main(["rules", "seed"]) == 0
    capsys.readouterr()
    assert main(["taxonomy", "rename", "İçecekler", "--name", "Drinks", "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("would rename")
    assert len(read_taxonomies(settings)) == 1
    assert main(["taxonomy", "rename", "İçecekler", "--name", "Drinks", "--by", "ops"]) == 0
    out = capsys.readouterr().out
    assert "nodes re-identified: 3" in out and "live as v2" in out
    assert main(["taxonomy", "merge", "Drinks > Meyve Suyu", "--into", "Drinks > Maden Suyu"]) == 0
    assert "live as v3" in capsys.readouterr().out
    tree = load_taxonomy(settings)
    assert sorted(" > ".join(n.path) for n in tree) == [
        "Drinks", "Drinks > Maden Suyu", "Süt Ürünleri", "Süt Ürünleri > Peynir",
    ]  # fmt: skip
    assert "Drinks" in (tmp_path / "rules.yaml").read_text(encoding="utf-8")
    assert main(["taxonomy", "split", "Drinks", "--into", "Hot"]) == 2  # refused: one part
    assert "two or more" in caplog.text
    capsys.readouterr()
    assert main(["taxonomy", "changes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[3] for line in lines] == ["rename", "merge"]
