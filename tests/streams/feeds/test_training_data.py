"""Raw feed files as training data (``--data``): normalised like ``feeds normalize``, rows aligned
with a truth file, labels from a raw field, the label's source never among the model inputs; and
``prodcat train|baseline --data`` end to end on a synthetic feed."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from prodcat.cli import main
from prodcat.core.model_store import load_card
from prodcat.core.settings import load_settings
from prodcat.streams.feeds.profile import FeedProfile, FieldSource
from prodcat.streams.feeds.training_data import load_training_data, shared_inputs
from tests.streams.feeds.synthetic import catalogue

NO_TITLE = 5  # a row without a title: a dead letter, its truth row skipped with it


def write_feed(tmp_path: Path, n: int = 60) -> tuple[Path, Path]:
    """A CSV feed (the category as an ``A > B > C`` string) and its truth file by row."""
    rows, truth = [], []
    for i, item in enumerate(catalogue(n, seed=11)):
        rows.append(
            {
                "sku": item.sku,
                "name": "" if i == NO_TITLE else item.title,
                "maker": item.brand,
                "price": f"{item.price:.2f}",
                "section": " > ".join(item.path),
                "kind": item.path[-1],
            }
        )
        truth.append({"row": i, "path": item.path})
    feed = tmp_path / "shop.csv"
    with feed.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    truth_file = tmp_path / "shop.truth.jsonl"
    truth_file.write_text("".join(json.dumps(t) + "\n" for t in truth), encoding="utf-8")
    return feed, truth_file


def test_raw_feed_rows_join_the_truth_by_row(tmp_path: Path) -> None:
    feed, truth = write_feed(tmp_path)
    data = load_training_data(load_settings(), feed, truth=truth)
    items = catalogue(60, seed=11)
    assert (data.kind, data.rows, data.no_product, len(data.examples)) == ("raw", 60, 1, 59)
    expected = [item for i, item in enumerate(items) if i != NO_TITLE]
    assert [e.title for e in data.examples] == [item.title for item in expected]
    assert [list(e.raw_path) for e in data.examples] == [item.path for item in expected]
    assert [e.brand for e in data.examples] == [item.brand for item in expected]
    assert {e.category_text for e in data.examples} == {""}


def test_labels_from_the_normalised_category_or_a_raw_field(tmp_path: Path) -> None:
    feed, _ = write_feed(tmp_path)
    by_category = load_training_data(load_settings(), feed)
    assert by_category.labels_from == "field category_path"
    assert [list(e.raw_path) for e in by_category.examples][:3] == [
        item.path for item in catalogue(3, seed=11)
    ]
    by_raw_key = load_training_data(load_settings(), feed, label_field="kind")
    assert by_raw_key.labels_from == "raw field kind"
    assert [e.raw_path for e in by_raw_key.examples][:3] == [
        (item.path[-1],) for item in catalogue(3, seed=11)
    ]
    by_brand = load_training_data(load_settings(), feed, label_field="brand")
    assert by_brand.withheld == ("brand",) and {e.brand for e in by_brand.examples} == {None}


def test_inputs_read_from_the_label_source_are_withheld() -> None:
    profile = FeedProfile(
        "shop",
        {
            "title": FieldSource("title", ("basic.name",)),
            "brand": FieldSource("brand", ("classes.main",)),
            "description": FieldSource("description", ("text", "classes")),
            "category": FieldSource("category", ("classes",), kind="delimited", delimiter=">"),
        },
    )
    assert shared_inputs([profile], ["classes"]) == ["brand", "description"]
    assert shared_inputs([profile], ["classes.sub"]) == ["description"]
    assert shared_inputs([profile], ["basic.code"]) == []


@pytest.mark.slow
def test_train_and_baseline_on_a_raw_feed_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    feed, truth = write_feed(tmp_path, n=300)
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "model: {family: logreg, multi_objective: true}\ntraining: {epochs: 30, batch_size: 32, "
        "learning_rate: 0.05}\n",
        encoding="utf-8",
    )
    data = ["--data", str(feed), "--truth", str(truth)]
    argv = ["train", *data, "--level", "2", "--config", str(config)]
    argv += ["--model-base", str(tmp_path / "models"), "--name", "shop"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "TF-IDF + LinearSVC (baseline)" in out and "| L2 | logreg (tiny.yaml) |" in out
    model_row = next(line for line in out.splitlines() if "logreg (tiny.yaml)" in line)
    assert float(model_row.split("|")[3]) > 0.6, out  # 15 classes: chance is 0.07
    card = load_card(tmp_path / "models" / "shop" / "1")
    assert card["data"]["kind"] == "raw" and card["data"]["labels_from"] == "truth file"
    assert card["data"]["level"] == 2 and card["data"]["labelled"] == 299
    # No rules for this feed: trained single-objective; the category text never an input.
    assert card["model_config"]["multi_objective"] is False
    assert "category_text" not in card["inputs_used"]
    assert all(c["path"].count(" > ") == 1 for c in card["classes"])

    assert main(["baseline", *data, "--levels", "1,2,3"]) == 0
    table = capsys.readouterr().out
    assert table.count("\n| L") == 3 and "| L3 |" in table
