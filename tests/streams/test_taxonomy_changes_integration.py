"""Taxonomy changes on a real broker with a real SavedModel: a rename and a merge rewrite the
labels that name the changed nodes (with their history), the rules file and the served model's
classes; after the backfill the affected products' predictions carry the new ids and paths; no
other label, rule or prediction changes."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

from prodcat.core.ids import label_key, path_id
from prodcat.core.model_store import available_versions, load_card
from prodcat.core.settings import Settings, TaxonomySettings
from prodcat.schemas.serde import serde_for
from prodcat.streams.backfill import backfill
from prodcat.streams.compacted import read_compacted
from prodcat.streams.exceptions import StreamsError
from prodcat.streams.stage import FEED_HEADER
from prodcat.streams.taxonomy_changes import change_taxonomy, read_changes
from prodcat.streams.taxonomy_store import current_taxonomy, publish_taxonomy
from prodcat.training.exceptions import TaxonomyError
from prodcat.training.taxonomy import CategoryTree
from prodcat.training.taxonomy_changes import Change
from tests.conftest import TrainedClassifier
from tests.streams.kafka_io import produce, product_records, with_model_copy

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _latest(settings: Settings, topic: str, record: str) -> dict[bytes, dict]:
    serde = serde_for(record)
    live = read_compacted(settings.kafka, topic)
    return {key: serde.decode(value) for key, value in live.values.items()}


def _raw(settings: Settings, topic: str) -> dict[bytes, bytes]:
    return dict(read_compacted(settings.kafka, topic).values)


def _top(prediction: dict) -> tuple[str, tuple[str, ...], float]:
    first = prediction["exclusive_top_k"][0]
    return first["category_id"], tuple(first["path"]), first["probability"]


def _label(product_id: str, category_ids: list[str], source: str) -> dict:
    objective = "exclusive" if len(category_ids) == 1 else "rule_based"
    return {"product_id": product_id, "objective": objective, "category_ids": category_ids,
            "source": source, "annotator": "ann" if source == "human" else None,
            "strategy": None, "score": None, "time_taken_ms": None, "model_version": None,
            "labelled_at": 1_000}  # fmt: skip


def test_a_rename_and_a_merge_rewrite_labels_rules_model_and_predictions(
    pipeline_settings: Settings,
    data_dir: Path,
    tmp_path: Path,
    trained_classifier: TrainedClassifier,
) -> None:
    settings = with_model_copy(pipeline_settings, tmp_path, trained_classifier.model_base)
    card = trained_classifier.card
    paths = [tuple(c["path"].split(" > ")) for c in card["classes"]]
    paths += [tuple(n["path"].split(" > ")) for n in card["rule_based_nodes"]]
    tree = CategoryTree.from_paths(paths, min_count=1, min_root_count=1)
    rules = tmp_path / "rules.yaml"
    settings = settings.model_copy(
        update={
            "taxonomy": TaxonomySettings(rules=rules, exclusive_max_depth=2, exclusive_min_count=1)
        }
    )
    publish_taxonomy(settings, tree)
    produce(settings, settings.topics.normalized, product_records(data_dir, 0, 240),
            {FEED_HEADER: b"shop"})  # fmt: skip
    assert backfill(settings, job="initial", rate=0, progress=False).scored == 240

    before = _latest(settings, settings.topics.predictions, "Prediction")
    counts = Counter(_top(p)[0] for p in before.values())
    (renamed, _), (merged, _), (target, _), *_rest = counts.most_common()
    other = next(c for c in card["classes"] if c["id"] not in (renamed, merged, target))["id"]
    path_of = {c["id"]: tuple(c["path"].split(" > ")) for c in card["classes"]}
    rules.write_text(yaml.safe_dump([
        {"category": " > ".join(path_of[cid]), "contains": word}
        for cid, word in ((renamed, "alpha"), (merged, "beta"), (target, "gamma"), (other, "delta"))
    ]), encoding="utf-8")  # fmt: skip

    by_top: dict[str, list[str]] = {}
    for prediction in before.values():
        by_top.setdefault(_top(prediction)[0], []).append(prediction["product_id"])
    labels = [_label(by_top[renamed][0], [renamed], "human"),
              _label(by_top[merged][0], [merged], "human"),
              _label(by_top[merged][1], [merged], "rules"),
              _label(by_top[target][0], [target], "human"),
              _label(by_top[target][1], [other], "human"),
              _label(by_top[target][2], [merged, target, other], "rules")]  # fmt: skip
    serde = serde_for("Label")
    produce(settings, settings.topics.labels,
            [(label_key(lb["product_id"], lb["objective"]), serde.encode(lb)) for lb in labels])  # fmt: skip
    labels_before = _raw(settings, settings.topics.labels)
    predictions_before = _raw(settings, settings.topics.predictions)

    # -- a rename ---------------------------------------------------------------------------------
    new_name = "Renamed Node"
    report = change_taxonomy(settings, Change("rename", renamed, name=new_name, by="ops"),
                             backfill=True)  # fmt: skip
    renamed_path = (*tree[renamed].path[:-1], new_name)
    renamed_id = path_id(renamed_path)
    depth = len(renamed_path)
    assert (
        report.applied.ids
        == {  # the node and its subtree: a path-id tree
            node.id: path_id((*renamed_path, *node.path[depth:]))
            for node in [tree[renamed], *tree.descendants(renamed)]
        }
    )
    assert report.labels == Counter({"human": 1}) and report.rules == 1
    assert report.model_version == 2 and report.rescored == len(by_top[renamed])
    live = current_taxonomy(settings)
    assert live is not None and live.tree[renamed_id].path == renamed_path
    assert renamed not in live.tree

    labels_now = _latest(settings, settings.topics.labels, "Label")
    first = labels_now[label_key(by_top[renamed][0], "exclusive")]
    assert first["category_ids"] == [renamed_id] and first["source"] == "human"
    assert first["annotator"] == "ann" and first["labelled_at"] == 1_000
    (revision,) = first["history"]
    assert (
        revision["category_ids"] == [renamed]
        and revision["change"] == report.applied.change.change_id
    )
    raw_now = _raw(settings, settings.topics.labels)
    changed = {key for key in labels_before if raw_now[key] != labels_before[key]}
    assert changed == {label_key(by_top[renamed][0], "exclusive")}  # nothing else

    predictions_now = _latest(settings, settings.topics.predictions, "Prediction")
    raw_predictions = _raw(settings, settings.topics.predictions)
    for key, prediction in predictions_now.items():
        old = before[key]
        if _top(old)[0] == renamed:
            assert prediction["model_version"] == 2
            top_id, top_path, probability = _top(prediction)
            assert (top_id, top_path) == (renamed_id, renamed_path)
            assert probability == pytest.approx(_top(old)[2], abs=1e-5)
        else:
            assert raw_predictions[key] == predictions_before[key]  # not re-scored
    v2 = load_card(settings.serving.model_base / "classifier" / "2")
    assert v2["remapped_from"]["version"] == 1
    assert [c["id"] for c in v2["classes"]] == [renamed_id if c["id"] == renamed else c["id"]
                                                for c in card["classes"]]  # fmt: skip

    # -- a merge ----------------------------------------------------------------------------------
    report = change_taxonomy(settings, Change("merge", merged, into=target), backfill=True)
    assert report.applied.ids[merged] == target
    assert set(report.applied.ids) == {merged} | {n.id for n in tree.descendants(merged)}
    assert report.labels == Counter({"human": 1, "rules": 2}) and report.rules == 1
    assert report.model_version == 3 and report.rescored == len(by_top[merged])
    labels_now = _latest(settings, settings.topics.labels, "Label")
    assert labels_now[label_key(by_top[merged][0], "exclusive")]["category_ids"] == [target]
    assert labels_now[label_key(by_top[merged][1], "exclusive")]["source"] == "rules"
    multi = labels_now[label_key(by_top[target][2], "rule_based")]
    assert multi["category_ids"] == [target, other]  # merged ids collapse, order kept
    assert multi["history"][0]["category_ids"] == [merged, target, other]
    raw_after_merge = _raw(settings, settings.topics.labels)
    changed = {key for key in labels_before if raw_after_merge[key] != raw_now[key]}
    assert changed == {label_key(by_top[merged][0], "exclusive"),
                       label_key(by_top[merged][1], "exclusive"),
                       label_key(by_top[target][2], "rule_based")}  # fmt: skip

    merged_predictions = _latest(settings, settings.topics.predictions, "Prediction")
    raw_merged = _raw(settings, settings.topics.predictions)
    for key, prediction in merged_predictions.items():
        if _top(before[key])[0] == merged:  # the merged class's products: now the target
            assert prediction["model_version"] == 3
            assert _top(prediction)[0] == target
            old = {s["category_id"]: s["probability"] for s in before[key]["exclusive_top_k"]}
            if target in old:  # the merged probability is the sum of the two
                assert _top(prediction)[2] == pytest.approx(old[merged] + old[target], abs=1e-5)
            ids = [s["category_id"] for s in prediction["exclusive_top_k"]]
            assert merged not in ids and len(ids) == len(set(ids))
        else:
            assert raw_merged[key] == raw_predictions[key]
    v3 = load_card(settings.serving.model_base / "classifier" / "3")
    assert len(v3["classes"]) == len(card["classes"]) - 1
    assert available_versions(settings.serving.model_base / "classifier") == [1, 2, 3]

    written = yaml.safe_load(rules.read_text(encoding="utf-8"))
    assert [r["category"] for r in written] == [
        " > ".join(renamed_path), " > ".join(tree[target].path), " > ".join(tree[target].path),
        " > ".join(tree[other].path),
    ]  # fmt: skip
    events = read_changes(settings)
    assert [e["op"] for e in events] == ["rename", "merge"]
    assert events[0]["ids"][renamed] == renamed_id and events[0]["by"] == "ops"
    assert json.loads(json.dumps(events[1]))["labels"] == {"human": 1, "rules": 2}

    with pytest.raises(TaxonomyError, match="neither an id nor a path"):  # refused: nothing written
        change_taxonomy(settings, Change("merge", merged, into=target))
    assert len(read_changes(settings)) == 2
    with pytest.raises(StreamsError):
        read_changes(settings.model_copy(update={"topics": settings.topics.model_copy(
            update={"taxonomy_events": "no-such-topic"})}))  # fmt: skip
