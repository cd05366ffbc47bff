"""The active-learning simulation and its report, on a slice of the real Flipkart feed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from prodcat.training.active_learning import (
    ExperimentConfig,
    Point,
    Pool,
    _pick,
    cohen_kappa,
    simulate,
    stopping_point,
)
from prodcat.training.al_learner import (
    EncodedFeatures,
    FFNLearner,
    LearnerConfig,
    LinearLearner,
)
from prodcat.training.al_report import labels_to_reach, plot, read_csv, summary, write_csv
from prodcat.training.dataset import Example, tree_of_examples
from prodcat.training.taxonomy import class_name_text

SMALL = ExperimentConfig(
    level=1,
    seeds=(0,),
    seed_size=60,
    round_size=60,
    max_labels=180,
    random_extra_points=(300,),
    learner=LearnerConfig(hidden=64, steps=60),
)


@pytest.fixture(scope="module")
def pool(examples: list[Example]) -> Pool:
    return Pool.build(examples[:3000], level=1, tree=tree_of_examples(examples))


@pytest.fixture(scope="module")
def learner(pool: Pool) -> FFNLearner:
    return FFNLearner(pool.features.pool, len(pool.classes), pool.rule_targets, SMALL.learner)


def test_pool_hides_nothing_it_should_not(pool: Pool) -> None:
    assert pool.features.pool.shape[0] == len(pool.y_pool) == len(pool.rule_targets)
    assert pool.test.shape[0] == len(pool.y_test) > 0
    assert pool.rule_targets.any(axis=1).mean() > 0.2  # free rule labels on a good share
    assert (pool.neighbour_distances[:, :-1] <= pool.neighbour_distances[:, 1:] + 1e-9).all()


@pytest.mark.parametrize("strategy", ["random", "margin", "qbc_kl", "density", "margin_diverse"])
def test_curve_grows_by_rounds_and_beats_chance(
    pool: Pool, learner: FFNLearner, strategy: str
) -> None:
    points = simulate(pool, learner, strategy, rules=False, seed=0, config=SMALL)
    sizes = [p.labels for p in points]
    expected = [60, 120, 180] + ([300] if strategy == "random" else [])
    assert sizes == expected
    majority = np.bincount(pool.y_test).max() / len(pool.y_test)
    assert points[-1].accuracy > majority + 0.1
    assert all(p.strategy == strategy and p.seed == 0 and not p.rules for p in points)


def test_rule_objective_runs_and_is_deterministic(pool: Pool, learner: FFNLearner) -> None:
    config = replace(SMALL, max_labels=120)
    first = simulate(pool, learner, "entropy", rules=True, seed=1, config=config)
    again = simulate(pool, learner, "entropy", rules=True, seed=1, config=config)
    assert [p.accuracy for p in first] == pytest.approx([p.accuracy for p in again], abs=0.01)
    assert all(p.rules for p in first)


def test_pick_never_repeats_and_diversity_skips_near_duplicates(pool: Pool) -> None:
    scores = np.linspace(1.0, 0.0, len(pool.y_pool))
    labelled = np.arange(10)
    plain = _pick(scores, 50, labelled, diverse=False, pool=pool, radius=0.3)
    diverse = _pick(scores, 50, labelled, diverse=True, pool=pool, radius=0.3)
    for picked in (plain, diverse):
        assert len(picked) == 50 == len(set(picked.tolist()))
        assert not set(picked.tolist()) & set(labelled.tolist())
    assert plain.tolist() == list(range(10, 60))  # the top scores, in order
    assert diverse.tolist() != plain.tolist()
    for position, row in enumerate(diverse):  # no later pick is a near duplicate of an earlier one
        near = pool.neighbours[row][pool.neighbour_distances[row] < 0.3]
        assert not set(near.tolist()) & set(diverse[position + 1 :].tolist())


@pytest.fixture(scope="module")
def word_char_pool(examples: list[Example]) -> Pool:
    return Pool.build(examples[:3000], level=1, rules_file=None, word_char=True)


@pytest.mark.parametrize("teacher_student", [False, True])
def test_linear_learners_curve(word_char_pool: Pool, pool: Pool, teacher_student: bool) -> None:
    wc = word_char_pool
    assert wc.features.dim > pool.features.dim  # char n-grams added to the words
    np.testing.assert_array_equal(wc.neighbours, pool.neighbours)  # diversity on words either way
    learner = LinearLearner(wc.features.pool, len(wc.classes), teacher_student=teacher_student)
    kind = "linear_ts" if teacher_student else "linear"
    config = replace(SMALL, learner_kind=kind, dataset="slice")
    points = simulate(wc, learner, "margin_diverse", rules=False, seed=0, config=config)
    assert [p.labels for p in points] == [60, 120, 180]
    assert all(p.learner == kind and p.dataset == "slice" for p in points)
    majority = np.bincount(wc.y_test).max() / len(wc.y_test)
    assert points[-1].accuracy > majority + 0.1
    fitted = learner.fit(np.arange(60), wc.y_pool[:60], rules=False, seed=0)
    probs = fitted.predict_proba(wc.test)
    assert probs.shape == (len(wc.y_test), len(wc.classes))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    unseen = np.setdiff1d(np.arange(len(wc.classes)), wc.y_pool[:60])
    assert (probs[:, unseen] < 1e-6).all()  # a class never labelled is never predicted
    selection = fitted.selection_proba(wc.features.pool)
    if teacher_student:  # the teacher (human labels only) picks; the student is measured
        assert not np.allclose(selection, fitted.predict_proba(wc.features.pool))
    else:
        np.testing.assert_array_equal(selection, fitted.predict_proba(wc.features.pool))


@pytest.mark.parametrize("teacher_student", [False, True])
def test_class_names_teach_classes_no_product_was_labelled_with(
    word_char_pool: Pool, teacher_student: bool
) -> None:
    wc = word_char_pool
    names = [class_name_text(c.split(" > ")) for c in wc.classes]
    prototypes = wc.features.transform(names)
    learner = LinearLearner(
        wc.features.pool,
        len(wc.classes),
        teacher_student=teacher_student,
        prototypes=prototypes,
        prototype_weight=1.0,
    )
    seen = wc.y_pool[:60]
    unseen = np.setdiff1d(np.arange(len(wc.classes)), seen)
    assert len(unseen) > 0
    fitted = learner.fit(np.arange(60), seen, rules=False, seed=0)
    # A product titled by an unlabelled class's name is put in that class; without the names
    # that class could never be predicted (test_linear_learners_curve).
    answers = fitted.predict_proba(prototypes[unseen]).argmax(axis=1)
    assert (answers == unseen).mean() >= 0.8
    config = replace(SMALL, learner_kind="linear_ts" if teacher_student else "linear")
    named = replace(config, class_names=1.0)
    assert named.learner_name == config.learner_name + "+names"
    points = simulate(wc, learner, "margin_diverse", rules=False, seed=0, config=named)
    plain = LinearLearner(wc.features.pool, len(wc.classes), teacher_student=teacher_student)
    before = simulate(wc, plain, "margin_diverse", rules=False, seed=0, config=config)
    assert all(p.learner.endswith("+names") for p in points)
    assert points[0].accuracy > before[0].accuracy  # 60 labels: the names are worth most
    with pytest.raises(ValueError, match="prototypes"):
        LinearLearner(wc.features.pool, len(wc.classes), prototypes=prototypes[:2])


def test_class_name_text() -> None:
    assert (
        class_name_text(["Clothing", "Women's Clothing", " Tops "]) == "Women's Clothing Tops Tops"
    )
    assert class_name_text(["clothing"]) == "clothing"
    assert class_name_text([]) == ""
    with pytest.raises(ValueError, match="class_names"):
        ExperimentConfig(learner_kind="ffn", class_names=1.0)
    named = ExperimentConfig(learner_kind="linear_enc", class_names=1.0, encoder_weight=2.0)
    assert named.learner_name == "linear_enc_w2+names"
    assert replace(named, learner_kind="linear", encoder_weight=1.0).learner_name == "linear+names"
    with pytest.raises(ValueError, match="encoder_weight"):
        ExperimentConfig(learner_kind="linear_enc", encoder_weight=0.0)


def test_encoder_teacher_picks_and_a_tfidf_student_is_measured(examples: list[Example]) -> None:
    from prodcat.core.settings import load_settings
    from prodcat.training.text_encoder import TextEncoder

    encoder = TextEncoder(load_settings().encoder.path)
    pool = Pool.build(examples[:1500], level=1, rules_file=None, encoder=encoder)
    features = pool.features
    assert isinstance(features, EncodedFeatures)
    assert features.dim == features.tfidf_columns + encoder.dim
    learner = LinearLearner(
        features.pool,
        len(pool.classes),
        teacher_student=True,
        student_columns=features.tfidf_columns,
    )
    config = replace(SMALL, learner_kind="linear_enc_ts")
    points = simulate(pool, learner, "margin_diverse", rules=False, seed=0, config=config)
    majority = np.bincount(pool.y_test).max() / len(pool.y_test)
    assert points[-1].accuracy > majority + 0.1
    fitted = learner.fit(np.arange(60), pool.y_pool[:60], rules=False, seed=0)
    # The student reads the TF-IDF columns only: the encoder's part cannot change its answer.
    blind = pool.test.tolil()
    blind[:, features.tfidf_columns :] = 0
    np.testing.assert_allclose(fitted.predict_proba(pool.test), fitted.predict_proba(blind.tocsr()))
    assert fitted.selector is not None and fitted.selector.columns is None  # the teacher sees all


def test_stability_is_recorded_and_the_stopping_point_waits_for_settled_rounds(
    word_char_pool: Pool,
) -> None:
    wc = word_char_pool
    learner = LinearLearner(wc.features.pool, len(wc.classes))
    config = replace(SMALL, learner_kind="linear", max_labels=300, stop_set=500)
    points = simulate(wc, learner, "margin", rules=False, seed=0, config=config)
    assert points[0].stability is None
    assert all(p.stability is not None and -1.0 <= p.stability <= 1.0 for p in points[1:])

    def at(labels: int, stability: float | None) -> Point:
        return Point("margin", False, 0, labels, 0.5 + labels / 10_000, 1.0, stability=stability)

    curve = [at(200, None), at(400, 0.995), at(600, 0.97), at(800, 0.992), at(1000, 0.999)]
    assert stopping_point(curve) == curve[4]  # two settled rounds in a row, not one
    assert stopping_point(curve, patience=1) == curve[1]
    assert stopping_point(curve[:4]) is None
    assert cohen_kappa(np.array([0, 1, 2, 2]), np.array([0, 1, 2, 2])) == 1.0
    assert cohen_kappa(np.array([0, 1, 0, 1]), np.array([1, 0, 1, 0])) == -1.0
    text = summary(curve)
    assert "| margin |" in text and "1,000: 0.6000" in text


def test_unknown_learner_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown learner"):
        ExperimentConfig(learner_kind="svm")


def test_labels_to_reach_interpolates() -> None:
    curve = {100: [0.5, 0.6], 200: [0.7], 400: [0.9]}
    assert labels_to_reach(curve, 0.5) == 100
    assert labels_to_reach(curve, 0.8) == pytest.approx(300)
    assert labels_to_reach(curve, 0.95) is None


def test_report_files(tmp_path: Path) -> None:
    points = [
        Point("random", False, seed, n, acc + seed * 0.01, 0.1)
        for seed in (0, 1)
        for n, acc in ((1000, 0.80), (2000, 0.85), (4000, 0.90))
    ] + [
        Point("margin", rules, seed, n, acc, 0.1)
        for rules in (False, True)
        for seed in (0, 1)
        for n, acc in ((1000, 0.85), (2000, 0.90))
    ]
    path = write_csv(points, tmp_path / "curves.csv")
    assert read_csv(path) == [replace(p, accuracy=round(p.accuracy, 4)) for p in points]
    text = summary(points)
    lines = text.splitlines()
    assert lines[0].startswith("| strategy | acc @ 1000 | acc @ 2000 |")
    margin = next(line for line in lines if line.startswith("| margin |"))
    assert "0.9000 ± 0.0000" in margin and "| 3,800 |" in margin  # random reaches 0.90 at 3.8k
    assert plot(points, tmp_path / "curves.png").stat().st_size > 10_000
    # Another learner in the same file: one table each, its random curve as its reference.
    linear = [
        replace(p, learner="linear", accuracy=p.accuracy + 0.05) for p in points if not p.rules
    ]
    both = summary(points + linear)
    assert "**flipkart, learner ffn**" in both and "**flipkart, learner linear**" in both
    assert plot(points + linear, tmp_path / "both.png").stat().st_size > 10_000


def test_curves_from_before_the_learner_column(tmp_path: Path) -> None:
    path = tmp_path / "old.csv"
    path.write_text("strategy,rules,seed,labels,accuracy,seconds\nmargin,False,0,200,0.6,1.0\n")
    assert read_csv(path) == [Point("margin", False, 0, 200, 0.6, 1.0, "ffn", "flipkart")]


@pytest.mark.slow
def test_cli_writes_curves_png_and_summary(tmp_path: Path, data_dir: Path, monkeypatch) -> None:
    from prodcat.cli import main

    monkeypatch.setenv("PRODCAT_DATA_DIR", str(data_dir))
    out = tmp_path / "al"
    argv = ["experiment", "active-learning", "--out", str(out), "--strategies", "random,margin"]
    argv += ["--seeds", "0", "--rules", "off", "--seed-size", "100", "--round-size", "100"]
    argv += ["--max-labels", "200", "--random-points", "300"]
    assert main(argv) == 0
    points = read_csv(out / "curves.csv")
    assert [(p.strategy, p.labels) for p in points] == [
        ("random", 100), ("random", 200), ("random", 300), ("margin", 100), ("margin", 200)
    ]  # fmt: skip
    assert all(0.2 < p.accuracy < 1.0 for p in points)
    assert (out / "curves.png").stat().st_size > 10_000
    assert "| margin |" in (out / "summary.md").read_text(encoding="utf-8")
    # A second learner into the same file keeps the first one's curves.
    argv += ["--learner", "linear", "--strategies", "margin"]
    assert main(argv) == 0
    again = read_csv(out / "curves.csv")
    assert [p for p in again if p.learner == "ffn"] == points
    assert [(p.learner, p.strategy, p.labels) for p in again if p.learner != "ffn"] == [
        ("linear", "margin", 100), ("linear", "margin", 200)
    ]  # fmt: skip
