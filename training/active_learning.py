"""Pool-based active-learning simulation on the fixed protocol (``prodcat experiment active-learning``).

The protocol's L-level split gives a pool (its training part, labels hidden) and a test part. The
oracle is the true path: asking for a product's label reveals its protocol class. Each run starts from
a random seed set, then in rounds of ``round_size`` asks for the products a strategy ranks highest
(uncertainty by least confidence, margin or entropy; query by committee over the models of the last
``committee`` rounds, as the sampler does with the last model versions; information density =
margin * mean similarity to the product's nearest pool neighbours, to the power β), retrains, and
scores accuracy on the test part. ``margin_diverse`` skips a candidate that is a near duplicate
(TF-IDF cosine distance below ``diversity_radius``) of one already picked in the same round;
``margin_diverse_output`` does the same with the sampler agent's view, the distance between the
predicted top-5 distributions (total variation below ``output_radius``). Every strategy
runs with and without the rule-based objective (free labels from the legacy keyword rules on every
pool product) and for several seeds; the random curve runs on to ``random_max_labels`` so we can say
how many random labels reach the accuracy of the best strategy.

The learner (``learner_kind``): ``ffn`` (prodcat's feed-forward family on word TF-IDF, with the
optional rule-based head, :class:`~prodcat.training.al_learner.FFNLearner`), ``linear`` (LinearSVC on
word 1-2-gram ⊕ char 2-5-gram TF-IDF) or ``linear_ts`` (the same as a teacher that labels the rest of
the pool for a student LinearSVC; the teacher still picks the labels), ``linear_enc`` (LinearSVC on
that TF-IDF ⊕ the pretrained text encoder's vectors, :mod:`prodcat.training.text_encoder`) or
``linear_enc_ts`` (that model as the teacher, a TF-IDF-only student: what would be served), see
:class:`~prodcat.training.al_learner.LinearLearner`. Near duplicates are always judged on word
TF-IDF, so ``diversity_radius`` means the same for every learner.

``class_names`` (a weight; 0: off): the linear learners also learn from one example per class made
from its name in the taxonomy (:func:`~prodcat.training.taxonomy.class_name_text`); the curves'
learner is then named ``<learner>+names``. ``encoder_weight`` scales the encoder's vectors beside the
TF-IDF (``linear_enc_w2`` in the curves for weight 2).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from sklearn.neighbors import NearestNeighbors

from prodcat.training import acquisition
from prodcat.training.al_learner import (
    EncodedFeatures,
    FFNLearner,
    LearnerConfig,
    LinearLearner,
    TextFeatures,
    WordCharFeatures,
)
from prodcat.training.dataset import (
    DEMO_DATASET,
    Example,
    demo_examples,
    protocol_split,
    tree_of_examples,
)
from prodcat.training.exceptions import DatasetError
from prodcat.training.pipeline import RuleLabels
from prodcat.training.rules import DEMO_RULES, RuleEngine, load_rules
from prodcat.training.taxonomy import CategoryTree, class_name_text

logger = logging.getLogger(__name__)

Array = np.ndarray[Any, Any]

LEARNERS = ("ffn", "linear", "linear_ts", "linear_enc", "linear_enc_ts")

STRATEGIES = (
    "random",
    "least_confidence",
    "margin",
    "entropy",
    "qbc_vote_entropy",
    "qbc_kl",
    "density",
    "margin_diverse",
    "margin_diverse_output",
)


@dataclass(frozen=True)
class ExperimentConfig:
    level: int = 3
    strategies: tuple[str, ...] = STRATEGIES
    rules: tuple[bool, ...] = (False, True)
    seeds: tuple[int, ...] = (0, 1)
    seed_size: int = 200
    round_size: int = 200
    max_labels: int = 2000
    random_max_labels: int = 6000
    random_extra_points: tuple[int, ...] = (2500, 3000, 4000, 5000, 6000, 7000, 8000, 10000, 14024)
    committee: int = 3
    density_neighbours: int = 10
    density_beta: float = 1.0
    diversity_radius: float = 0.3
    output_radius: float = 0.1
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    learner_kind: str = "ffn"
    #: pool products whose predictions are compared round to round (the stopping criterion)
    stop_set: int = 1000
    #: the pool's name in the curves (the demo's dataset, or the ``--data`` file's stem)
    dataset: str = DEMO_DATASET
    #: weight of one example per class made from its taxonomy name (linear learners; 0: none)
    class_names: float = 0.0
    #: scale of the encoder's unit vectors beside the TF-IDF (``linear_enc*`` learners)
    encoder_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.learner_kind not in LEARNERS:
            raise ValueError(f"unknown learner {self.learner_kind!r}; known: {list(LEARNERS)}")
        if self.class_names < 0 or (self.class_names > 0 and self.learner_kind == "ffn"):
            raise ValueError("class_names needs a linear learner and a weight of at least 0")
        if self.encoder_weight <= 0:
            raise ValueError("encoder_weight must be above 0")
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown:
            raise ValueError(f"unknown strategies {unknown}; known: {list(STRATEGIES)}")
        if self.seed_size < 1 or self.round_size < 1 or self.max_labels < self.seed_size:
            raise ValueError("need seed_size >= 1, round_size >= 1 and max_labels >= seed_size")

    @property
    def learner_name(self) -> str:
        """The learner as the curves name it: ``linear_enc_w2+names`` is ``linear_enc`` with the
        encoder's vectors at weight 2 and class names."""
        weighted = self.learner_kind.startswith("linear_enc") and self.encoder_weight != 1.0
        return (
            self.learner_kind
            + (f"_w{self.encoder_weight:g}" if weighted else "")
            + ("+names" if self.class_names > 0 else "")
        )


@dataclass(frozen=True)
class Point:
    strategy: str
    rules: bool
    seed: int
    labels: int
    accuracy: float
    seconds: float
    learner: str = "ffn"
    dataset: str = DEMO_DATASET
    #: Cohen's kappa between this round's and the previous round's predictions on a fixed stop set
    #: of unlabelled pool products (None for the first point): the stopping criterion's signal
    stability: float | None = None


class Fitted(Protocol):
    def predict_proba(self, features: Any) -> Array: ...
    def selection_proba(self, features: Any) -> Array: ...


class Learner(Protocol):
    def fit(self, labelled: Array, labels: Array, *, rules: bool, seed: int) -> Fitted: ...


@dataclass
class Pool:
    """The protocol split turned into fixed features, labels and (optionally) free rule labels."""

    features: TextFeatures | WordCharFeatures | EncodedFeatures
    test: Any
    y_pool: Array
    y_test: Array
    classes: list[str]
    rule_targets: Array
    neighbours: Array
    neighbour_distances: Array

    @classmethod
    def build(
        cls,
        examples: Sequence[Example],
        level: int,
        *,
        neighbours: int = 30,
        tree: CategoryTree | None = None,
        rules_file: Path | None = DEMO_RULES,
        word_char: bool = False,
        encoder: Any = None,
        encoder_weight: float = 1.0,
    ) -> Pool:
        """``tree`` (default: the examples' own) must hold every category the rules name;
        ``rules_file=None``: no free rule labels (data without rules, ``--data``); ``word_char``:
        the linear learner's features (neighbours are found on word TF-IDF either way);
        ``encoder`` (a :class:`~prodcat.training.text_encoder.TextEncoder`): its vectors appended."""
        split = protocol_split(examples, level)
        if not split.train:
            deepest = max((len(e.path) for e in examples), default=0)
            raise DatasetError(
                f"no class at level {level} has enough products (paths are at most {deepest} "
                "levels deep): choose a lower --level"
            )
        if rules_file is not None:
            tree = tree or tree_of_examples(examples)
            engine = RuleEngine(load_rules(rules_file, tree), tree)
            rule_targets = RuleLabels.build(engine, tree, split.train).targets
        else:
            rule_targets = np.zeros((len(split.train), 0), dtype="float32")
        words = TextFeatures([_text(e) for e in split.train])
        k = min(neighbours + 1, words.pool.shape[0])
        index = NearestNeighbors(n_neighbors=k, metric="cosine").fit(words.pool)
        distances, ids = index.kneighbors(words.pool)
        texts = [_text(e) for e in split.train]
        features: TextFeatures | WordCharFeatures | EncodedFeatures = words
        if encoder is not None:
            features = EncodedFeatures(texts, encoder, encoder_weight)
        elif word_char:
            features = WordCharFeatures(texts)
        return cls(
            features=features,
            test=features.transform([_text(e) for e in split.test]),
            y_pool=np.asarray(split.train_y),
            y_test=np.asarray(split.test_y),
            classes=list(split.labels),
            rule_targets=rule_targets,
            neighbours=ids[:, 1:],
            neighbour_distances=distances[:, 1:],
        )


def cohen_kappa(a: Array, b: Array) -> float:
    """Agreement of two label vectors beyond chance (1: identical, 0: as if independent)."""
    a, b = np.asarray(a), np.asarray(b)
    if len(a) == 0:
        return 1.0
    observed = float((a == b).mean())
    labels = np.union1d(a, b)
    expected = float(sum((a == c).mean() * (b == c).mean() for c in labels))
    return 1.0 if expected >= 1.0 else (observed - expected) / (1.0 - expected)


def stopping_point(
    points: Sequence[Point], *, threshold: float = 0.99, patience: int = 2
) -> Point | None:
    """Stabilising predictions (as small-text's stopping criterion): the first point of a curve
    after which ``patience`` consecutive rounds changed the stop set's predictions by less than
    ``threshold`` kappa; None if the curve never settles."""
    run = 0
    for point in sorted(points, key=lambda p: p.labels):
        run = run + 1 if point.stability is not None and point.stability >= threshold else 0
        if run >= patience:
            return point
    return None


def _text(example: Example) -> str:
    return f"{example.title} {example.brand or ''}".strip()


def _pick(
    scores: Array,
    k: int,
    labelled: Array,
    *,
    diverse: bool,
    pool: Pool,
    radius: float,
) -> Array:
    """The ``k`` best unlabelled rows; ``diverse`` skips near duplicates of this round's picks."""
    s = np.asarray(scores, dtype=np.float64).copy()
    s[labelled] = -np.inf
    if not diverse:
        return acquisition.select(s, k, exclude=~np.isfinite(s))[0]
    blocked = np.zeros(len(s), dtype=bool)
    blocked[labelled] = True
    chosen: list[int] = []
    for row in np.argsort(-s, kind="stable"):
        if blocked[row]:
            continue
        chosen.append(int(row))
        near = pool.neighbours[row][pool.neighbour_distances[row] < radius]
        blocked[near] = True
        if len(chosen) == k:
            break
    return np.asarray(chosen, dtype=np.int64)


def _pick_by_output(scores: Array, probs: Array, k: int, labelled: Array, radius: float) -> Array:
    """Like the sampler agent: skip a candidate whose top-5 prediction is within total variation
    ``radius`` of one already picked this round (it sees predictions, not product texts)."""
    s = np.asarray(scores, dtype=np.float64).copy()
    s[labelled] = -np.inf
    order = np.argsort(-s, kind="stable")[: len(s) - len(labelled)]
    signatures = acquisition.top_k_signature(probs, 5)
    return np.asarray(acquisition.pick_diverse(order, signatures, k, radius), dtype=np.int64)


def _scores(
    strategy: str, probs: Array, history: list[Array], pool: Pool, config: ExperimentConfig
) -> Array:
    if strategy in ("least_confidence", "margin", "entropy"):
        return acquisition.score(strategy, probs)
    if strategy.startswith("margin_diverse"):
        return acquisition.margin(probs)
    if strategy.startswith("qbc_"):
        members = history[-config.committee :]
        if len(members) < 2:  # the first rounds: no committee yet, fall back to margin
            return acquisition.margin(probs)
        committee = np.stack(members)
        if strategy == "qbc_vote_entropy":
            # Ties in vote entropy are common with 3 members: break them by the consensus margin.
            return acquisition.vote_entropy(committee) + 1e-3 * acquisition.margin(
                committee.mean(axis=0)
            )
        return acquisition.kl_to_consensus(committee)
    if strategy == "density":
        n = config.density_neighbours
        similarity = 1.0 - pool.neighbour_distances[:, :n].mean(axis=1)
        return acquisition.information_density(
            acquisition.margin(probs), similarity, config.density_beta
        )
    raise ValueError(f"no score for strategy {strategy!r}")


def simulate(
    pool: Pool,
    learner: Learner,
    strategy: str,
    *,
    rules: bool,
    seed: int,
    config: ExperimentConfig,
    on_point: Callable[[Point], None] | None = None,
    selections: dict[int, Array] | None = None,
) -> list[Point]:
    """One learning curve: seed set, then rounds until ``max_labels`` (random: further points).

    ``selections``, when given, receives the labelled pool rows at every point (by label count)."""
    rng = np.random.default_rng(seed)
    n = len(pool.y_pool)
    labelled = rng.choice(n, size=min(config.seed_size, n), replace=False)
    history: list[Array] = []
    points: list[Point] = []
    sizes = list(range(config.seed_size, config.max_labels + 1, config.round_size))
    if sizes[-1] != config.max_labels:
        sizes.append(config.max_labels)
    if strategy == "random":
        sizes += [s for s in config.random_extra_points if config.max_labels < s <= n]
        order = np.concatenate([labelled, rng.permutation(np.setdiff1d(np.arange(n), labelled))])
    # The stop set: its own generator, so the curves' label order is as it always was.
    stop_rows = np.random.default_rng(10_000 + seed).choice(
        n, size=min(config.stop_set, n), replace=False
    )
    previous: Array | None = None
    for position, size in enumerate(sizes):
        if strategy == "random":
            labelled = order[:size]
        started = time.perf_counter()
        fitted = learner.fit(labelled, pool.y_pool[labelled], rules=rules, seed=seed)
        current = fitted.predict_proba(pool.features.pool[stop_rows]).argmax(1)
        stability = None if previous is None else cohen_kappa(previous, current)
        previous = current
        point = Point(
            strategy=strategy,
            rules=rules,
            seed=seed,
            labels=len(labelled),
            accuracy=float((fitted.predict_proba(pool.test).argmax(1) == pool.y_test).mean()),
            seconds=time.perf_counter() - started,
            learner=config.learner_name,
            dataset=config.dataset,
            stability=stability,
        )
        points.append(point)
        if selections is not None:
            selections[len(labelled)] = labelled.copy()
        if on_point is not None:
            on_point(point)
        if strategy == "random" or position + 1 == len(sizes):
            continue
        probs = fitted.selection_proba(pool.features.pool)
        history.append(probs)
        k = sizes[position + 1] - len(labelled)
        scores = _scores(strategy, probs, history, pool, config)
        if strategy == "margin_diverse_output":
            picked = _pick_by_output(scores, probs, k, labelled, config.output_radius)
        else:
            picked = _pick(
                scores,
                k,
                labelled,
                diverse=strategy == "margin_diverse",
                pool=pool,
                radius=config.diversity_radius,
            )
        labelled = np.concatenate([labelled, picked])
    return points


def run_experiment(
    config: ExperimentConfig,
    *,
    data_dir: Path | None = None,
    examples: Sequence[Example] | None = None,
    on_point: Callable[[Point], None] | None = None,
    done: Sequence[Point] = (),
    rules_file: Path | None = DEMO_RULES,
    encoder: Any = None,
) -> list[Point]:
    """Every strategy, with and without rules, for every seed, on one pool; points in run order.

    Curves already in ``done`` (a previous, interrupted run of the same configuration) are kept and
    not run again. ``encoder``: the text encoder the ``linear_enc*`` learners need."""
    if examples is None:
        if data_dir is None:
            raise ValueError("need data_dir or examples")
        examples = demo_examples(data_dir)
    linear = config.learner_kind != "ffn"
    if linear:
        config = replace(config, rules=(False,))  # the linear learners have no rule objective
    uses_encoder = config.learner_kind.startswith("linear_enc")
    if uses_encoder and encoder is None:
        raise ValueError(f"learner {config.learner_kind} needs the text encoder")
    pool = Pool.build(
        examples,
        config.level,
        rules_file=rules_file,
        word_char=linear,
        encoder=encoder if uses_encoder else None,
        encoder_weight=config.encoder_weight,
    )
    logger.info(
        "active learning: pool %d, test %d, %d classes, rule labels on %.1f%% of the pool",
        len(pool.y_pool),
        len(pool.y_test),
        len(pool.classes),
        100 * float(pool.rule_targets.any(axis=1).mean()),
    )
    learner: Learner
    if linear:
        features = pool.features
        learner = LinearLearner(
            features.pool,
            len(pool.classes),
            teacher_student=config.learner_kind.endswith("_ts"),
            student_columns=(
                features.tfidf_columns if isinstance(features, EncodedFeatures) else None
            ),
            prototypes=(
                features.transform([class_name_text(c.split(" > ")) for c in pool.classes])
                if config.class_names > 0
                else None
            ),
            prototype_weight=config.class_names,
        )
    else:
        learner = FFNLearner(
            pool.features.pool, len(pool.classes), pool.rule_targets, config.learner
        )
    points: list[Point] = list(done)
    finished = {(p.strategy, p.rules, p.seed) for p in done if p.learner == config.learner_name}
    for seed in config.seeds:
        for rules in config.rules:
            for strategy in config.strategies:
                if (strategy, rules, seed) in finished:
                    continue
                points += simulate(
                    pool,
                    learner,
                    strategy,
                    rules=rules,
                    seed=seed,
                    config=config,
                    on_point=on_point,
                )
    return points
