"""``prodcat labels import|rules|snapshot`` against a real broker."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from prodcat.cli import main
from prodcat.core.settings import ServingSettings, Settings
from prodcat.schemas.serde import serde_for
from prodcat.streams.readback import read_topics
from prodcat.streams.taxonomy_store import publish_taxonomy
from prodcat.streams.worker_process import worker_env
from prodcat.training.dataset import load_flipkart, tree_of_examples
from prodcat.training.rules import DEMO_RULES
from tests.conftest import TrainedClassifier
from tests.streams.kafka_io import flipkart_products, produce

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_import_rules_and_snapshot(
    pipeline_settings: Settings,
    data_dir: Path,
    tmp_path: Path,
    trained_classifier: TrainedClassifier,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = tmp_path / "models"
    shutil.copytree(trained_classifier.model_base, base)
    settings = pipeline_settings.model_copy(update={"serving": ServingSettings(model_base=base)})
    for name, value in worker_env(settings).items():
        if name.startswith("PRODCAT_"):
            monkeypatch.setenv(name, value)
    known = set(trained_classifier.class_ids)
    rows = [(p, c) for p, c in flipkart_products(data_dir, 3000) if c in known][:40]
    products = serde_for("Product")
    produce(
        settings,
        settings.topics.normalized,
        [(p["product_id"].encode(), products.encode(p)) for p, _ in rows],
    )
    csv = tmp_path / "labels.csv"
    lines = ["product_id,category_id"] + [f"{p['product_id']},{c}" for p, c in rows[:30]]
    csv.write_text("\n".join([*lines, "p-x,c_000000000000", ",nothing"]) + "\n")

    assert main(["labels", "import", str(csv)]) == 0
    out = capsys.readouterr().out
    assert "published 30 labels" in out and "2 dead letters" in out
    letters = serde_for("DeadLetter")
    dead = [
        letters.decode(r.value or b"")
        for r in read_topics(settings.kafka, [settings.topics.deadletter], expected=2)
    ]
    assert sorted(d["error_kind"] for d in dead) == ["no_product_id", "unknown_category"]
    assert {d["original_value"] for d in dead} == {b"p-x,c_000000000000", b",nothing"}
    assert {d["stage"] for d in dead} == {"labels"}

    # the demo's configuration: the Flipkart tree as the taxonomy, its rules file
    publish_taxonomy(settings, tree_of_examples(load_flipkart(data_dir)), reason="test")
    assert main(["labels", "rules", "--file", str(DEMO_RULES)]) == 0
    assert "rule_based" in capsys.readouterr().out

    snapshot = tmp_path / "snapshot.jsonl"
    assert main(["labels", "snapshot", str(snapshot)]) == 0
    out = capsys.readouterr().out
    assert f"to {snapshot}" in out
    from prodcat.training.labels import read_snapshot

    items = list(read_snapshot(snapshot))
    assert sum(1 for i in items if i.exclusive) == 30
    assert any(i.rule_based for i in items)
    truth = dict((p["product_id"], c) for p, c in rows)
    assert all(i.exclusive == truth[i.product_id] for i in items if i.exclusive)
