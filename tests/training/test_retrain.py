"""The promotion gate, the holdout split, promotion into the model store and the choice among
alternative training configs (no Kafka)."""

from __future__ import annotations

import json
from pathlib import Path

from prodcat.training.labels import LabelledProduct, Vocabulary, free_version, in_holdout
from prodcat.training.retrain import gate, promote, retrain, split_holdout
from prodcat.training.train_command import RunConfig


def test_the_gate_promotes_unless_worse_by_more_than_epsilon() -> None:
    cand = {"holdout_accuracy": 0.80, "holdout_size": 100.0}
    assert gate(cand, None, 0.0).promote
    assert gate(cand, {"holdout_accuracy": 0.80}, 0.0).promote
    assert gate(cand, {"holdout_accuracy": 0.81}, 0.02).promote
    decision = gate(cand, {"holdout_accuracy": 0.85}, 0.02)
    assert not decision.promote and "worse than serving" in decision.reason
    assert not gate({"holdout_size": 0.0}, {"holdout_accuracy": 0.5}, 1.0).promote


def _item(i: int, exclusive: str | None = "c_a") -> LabelledProduct:
    return LabelledProduct({"product_id": f"p{i}", "title": f"t{i}"}, exclusive, ())


def test_holdout_products_are_never_trained_on() -> None:
    items = [_item(i, "c_a" if i % 3 else None) for i in range(300)]
    data = split_holdout(items, 0.3)
    train_ids = {i.product_id for i in data.train}
    assert not train_ids & {i.product_id for i in items if in_holdout(i.product_id, 0.3)}
    assert all(i.exclusive for i in data.holdout)
    fixed = [_item(1), _item(2, None)]
    data = split_holdout(items, 0.3, fixed)
    assert data.holdout == [fixed[0]] and not {"p1", "p2"} & {i.product_id for i in data.train}


def test_promotion_is_atomic_and_versions_stay_unique(tmp_path: Path) -> None:
    base, work = tmp_path / "models", tmp_path / "work"
    (base / "clf" / "1").mkdir(parents=True)
    (work / "candidates" / "clf" / "2").mkdir(parents=True)  # a rejected candidate
    assert free_version(base, "clf", work) == 3
    cand = work / "candidates" / "clf" / "3"
    cand.mkdir()
    (cand / "saved_model.pb").write_bytes(b"pb")
    (cand / "model_card.json").write_text(json.dumps({"version": 3}))
    target = promote(cand, base, "clf")
    assert target == base / "clf" / "3" and (target / "saved_model.pb").read_bytes() == b"pb"
    assert not list((base / "clf").glob(".*partial"))
    assert (base / "models.config").is_file()
    (work / "jobs" / "v7").mkdir(parents=True)  # a job launched as v7 that has not exported yet
    assert free_version(base, "clf", work) == 8


def test_concurrent_promotions_of_one_version_get_distinct_versions(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    base = tmp_path / "models"
    candidates = []
    for i in range(4):  # four jobs that all believed version 2 was free
        cand = tmp_path / f"work{i}" / "candidates" / "clf" / "2"
        cand.mkdir(parents=True)
        (cand / "saved_model.pb").write_bytes(f"pb{i}".encode())
        (cand / "model_card.json").write_text(json.dumps({"version": 2}))
        candidates.append(cand)
    with ThreadPoolExecutor(4) as pool:
        targets = list(pool.map(lambda c: promote(c, base, "clf"), candidates))
    assert sorted(int(t.name) for t in targets) == [2, 3, 4, 5]
    for cand, target in zip(candidates, targets, strict=True):
        assert (target / "saved_model.pb").read_bytes() == (cand / "saved_model.pb").read_bytes()
        assert json.loads((target / "model_card.json").read_text())["version"] == int(target.name)
    assert not list((base / "clf").glob(".*partial"))


def _config(path: Path, fields: list[str], family: str = "logreg") -> RunConfig:
    path.write_text(
        f"model:\n  family: {family}\n  fields: {fields}\n  multi_objective: false\n"
        "training:\n  epochs: 8\n  batch_size: 32\n  learning_rate: 0.05\n  seed: 0\n",
        encoding="utf-8",
    )
    return RunConfig.load(path)


def test_the_job_trains_every_alternative_and_keeps_the_best_on_the_holdout(
    tmp_path: Path,
) -> None:
    kinds = {"c_aaaaaaaaaaaa": "kettle", "c_bbbbbbbbbbbb": "sandal", "c_cccccccccccc": "lamp"}
    vocabulary = Vocabulary(None, {cid: word.title() for cid, word in kinds.items()})
    items = [
        LabelledProduct(
            {"product_id": f"p{i}", "title": f"{word} model {i}", "brand": "acme"}, cid, ()
        )
        for i in range(240)
        for cid, word in [list(kinds.items())[i % 3]]
    ]
    blind = _config(tmp_path / "blind.yaml", ["brand"])  # one brand for all: cannot tell them apart
    seeing = _config(tmp_path / "seeing.yaml", ["title"])
    events: list[tuple[str, dict[str, object]]] = []
    result = retrain(
        items,
        vocabulary=vocabulary,
        run=blind,
        alternatives=[seeing],
        model_base=tmp_path / "models",
        name="clf",
        work_dir=tmp_path / "work",
        version=1,
        epsilon=0.0,
        holdout_fraction=0.25,
        fixed_holdout=None,
        emit=lambda event, **fields: events.append((event, fields)),
        precision_target=0.9,
    )
    assert result.outcome == "promoted", result
    card = json.loads((tmp_path / "models" / "clf" / "1" / "model_card.json").read_text())
    options = {o["config_file"]: o for o in card["chosen_from"]}
    assert options[str(tmp_path / "seeing.yaml")]["chosen"]
    assert options[str(tmp_path / "seeing.yaml")]["holdout_accuracy"] > 0.9
    assert options[str(tmp_path / "blind.yaml")]["holdout_accuracy"] < 0.5
    assert card["model_config"]["fields"] == ["title"]
    # Back-off thresholds chosen on the holdout for the promoted model: every class has one.
    assert card["decisions"]["target"] == 0.9 and card["decisions"]["holdout_size"] >= 50
    assert set(kinds) <= set(card["decisions"]["thresholds"])
    assert [e for e, _ in events] == ["trained", "evaluated", "promoted"]
    assert not (tmp_path / "work" / "options").exists() or not any(
        (tmp_path / "work" / "options").iterdir()
    )  # the option not chosen is gone


def test_class_name_examples_teach_a_class_its_labels_do_not_describe(tmp_path: Path) -> None:
    from prodcat.training.inputs import model_inputs
    from prodcat.training.retrain import class_name_items, train_candidate
    from prodcat.training.trainer import predict

    paths = {
        "c_kettle000000": "Home > Kitchen > Kettles",
        "c_sandal000000": "Clothing > Shoes > Sandals",
        "c_lamp00000000": "Home > Lighting > Lamps",
    }
    vocabulary = Vocabulary(None, paths)
    items = [
        LabelledProduct({"product_id": f"k{i}", "title": f"steel kettles {i}"}, "c_kettle000000")
        for i in range(30)
    ] + [
        LabelledProduct({"product_id": f"s{i}", "title": f"summer sandals {i}"}, "c_sandal000000")
        for i in range(30)
    ]
    # The one lamp labelled so far is titled by its model name: its label alone cannot say that
    # a product called "desk lighting lamps" is a lamp.
    items.append(LabelledProduct({"product_id": "l0", "title": "brightlux 3000"}, "c_lamp00000000"))
    named = class_name_items(sorted(paths), vocabulary, 2)
    assert [i.product["title"] for i in named[::2]] == [
        "Kitchen Kettles Kettles", "Lighting Lamps Lamps", "Shoes Sandals Sandals"
    ]  # fmt: skip
    assert class_name_items(sorted(paths), Vocabulary(), 2) == []  # no known path, no example
    query = model_inputs([{"product_id": "q", "title": "desk lighting lamps"}])
    answers = {}
    for copies in (0, 3):
        path = tmp_path / f"c{copies}.yaml"
        path.write_text(
            "model:\n  family: logreg\n  fields: [title]\n  multi_objective: false\n"
            "training:\n  epochs: 30\n  batch_size: 16\n  learning_rate: 0.05\n  seed: 0\n"
            f"  class_name_examples: {copies}\n",
            encoding="utf-8",
        )
        candidate = train_candidate(items, vocabulary, RunConfig.load(path))
        probs = predict(candidate.model, query)["exclusive"][0]
        answers[copies] = candidate.class_ids[int(probs.argmax())]
        assert candidate.card["data"]["train_products"] == len(items)
        assert candidate.card["data"]["class_name_examples"] == 3 * copies
        assert candidate.card["data"]["exclusive_labels"] == len(items)
    assert answers == {0: answers[0], 3: "c_lamp00000000"}
    assert answers[0] != "c_lamp00000000"
