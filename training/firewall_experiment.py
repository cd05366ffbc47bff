"""The label firewall on injected noise, offline (``prodcat experiment firewall``).

On the Flipkart protocol split at ``--level``: a share of the training labels is replaced by a wrong
class, ``uniform`` (any other class) or ``sibling`` (another class under the same parent, where one
exists: the mistakes people and keyword rules make); out-of-sample probabilities come from 5-fold
cross-fitting on the noisy labels; :func:`prodcat.training.firewall.find_suspects` flags labels.
Reported: the firewall's precision and recall against the injected errors, and the test accuracy of
TF-IDF (word + char) + LinearSVC trained on the noisy labels, on the noisy labels less the flagged
ones, and on the clean labels.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from prodcat.training.dataset import Split, protocol_label
from prodcat.training.firewall import find_suspects, out_of_sample_probabilities


@dataclass(frozen=True)
class FirewallResult:
    kind: str
    rate: float
    injected: int
    flagged: int
    precision: float
    recall: float
    acc_noisy: float
    acc_firewall: float
    acc_clean: float

    def row(self) -> str:
        return (
            f"| {self.kind} | {self.rate:.0%} | {self.injected:,} | {self.flagged:,} | "
            f"{self.precision:.3f} | {self.recall:.3f} | {self.acc_noisy:.4f} | "
            f"{self.acc_firewall:.4f} | {self.acc_clean:.4f} |"
        )


HEADER = (
    "| noise | rate | wrong labels | flagged | precision | recall | accuracy, noisy labels | "
    "accuracy, firewall | accuracy, clean labels |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def _features(split: Split) -> tuple[object, object]:
    from prodcat.training.al_learner import WordCharFeatures

    features = WordCharFeatures([f"{e.title} {e.brand or ''}" for e in split.train])
    return features.pool, features.transform([f"{e.title} {e.brand or ''}" for e in split.test])


def _noisy(
    split: Split, kind: str, rate: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Labels with ``rate`` of them replaced, and the mask of the replaced ones."""
    y = np.asarray(split.train_y)
    n_classes = len(split.labels)
    parent = [label.rsplit(" > ", 1)[0] for label in split.labels]
    siblings: dict[str, list[int]] = defaultdict(list)
    for index, p in enumerate(parent):
        siblings[p].append(index)
    chosen = rng.choice(len(y), size=round(rate * len(y)), replace=False)
    noisy = y.copy()
    for i in chosen:
        pool = [c for c in siblings[parent[y[i]]] if c != y[i]] if kind == "sibling" else []
        if not pool:
            other = int(rng.integers(n_classes - 1))
            noisy[i] = other + (other >= y[i])
        else:
            noisy[i] = int(rng.choice(pool))
    mask = np.zeros(len(y), dtype=bool)
    mask[chosen] = True
    return noisy, mask


def _accuracy(
    train_x: object, labels: np.ndarray, keep: np.ndarray, test_x: object, test_y: np.ndarray
) -> float:
    from sklearn.svm import LinearSVC

    model = LinearSVC(C=1.0, random_state=0).fit(train_x[keep], labels[keep])  # type: ignore[index]
    return float((model.predict(test_x) == test_y).mean())


def run(split: Split, kinds: list[str], rates: list[float], seed: int = 0) -> list[FirewallResult]:
    rng = np.random.default_rng(seed)
    train_x, test_x = _features(split)
    clean = np.asarray(split.train_y)
    test_y = np.asarray(split.test_y)
    everything = np.ones(len(clean), dtype=bool)
    acc_clean = _accuracy(train_x, clean, everything, test_x, test_y)
    results = []
    for kind in kinds:
        for rate in rates:
            noisy, injected = _noisy(split, kind, rate, rng)
            probabilities = out_of_sample_probabilities(
                train_x, noisy, len(split.labels), seed=seed
            )
            flagged = find_suspects(noisy, probabilities).mask
            hits = int((flagged & injected).sum())
            results.append(
                FirewallResult(
                    kind,
                    rate,
                    int(injected.sum()),
                    int(flagged.sum()),
                    hits / max(1, int(flagged.sum())),
                    hits / max(1, int(injected.sum())),
                    _accuracy(train_x, noisy, everything, test_x, test_y),
                    _accuracy(train_x, noisy, ~flagged, test_x, test_y),
                    acc_clean,
                )
            )
    return results


RULES_HEADER = (
    "| screening model learns from | rule-labelled products judged | wrong | flagged | precision "
    "| recall | accuracy, with rule labels | accuracy, firewall | accuracy, true labels instead |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
)


@dataclass(frozen=True)
class RuleFirewallResult:
    """The firewall over the keyword rules' labels (where one rule class fires at the level)."""

    reference: int  # people's labels the screening model learns from; 0: the rule labels
    products: int
    wrong: int
    flagged: int
    precision: float
    recall: float
    acc_rules: float
    acc_firewall: float
    acc_true: float

    def row(self) -> str:
        teacher = (
            f"{self.reference:,} people's labels" if self.reference else "the rule labels (5-fold)"
        )
        return (
            f"| {teacher} | {self.products:,} | {self.wrong:,} ({self.wrong / self.products:.1%})"
            f" | {self.flagged:,} | {self.precision:.3f} | {self.recall:.3f} | "
            f"{self.acc_rules:.4f} | {self.acc_firewall:.4f} | {self.acc_true:.4f} |"
        )


def rule_labelled(split: Split, engine: object, tree: object) -> tuple[np.ndarray, np.ndarray]:
    """The training rows on which the rules name exactly one class of the split's level, and
    that class."""
    index = {label: i for i, label in enumerate(split.labels)}
    rows, given = [], []
    for row, example in enumerate(split.train):
        named = {
            protocol_label(tree[node].path, split.level)  # type: ignore[index]
            for node in engine.apply(example)  # type: ignore[attr-defined]
            if len(tree[node].path) == split.level  # type: ignore[index]
        }
        classes = [index[n] for n in named if n in index]
        if len(classes) == 1:
            rows.append(row)
            given.append(classes[0])
    return np.asarray(rows, dtype=np.int64), np.asarray(given, dtype=np.int64)


def run_rules(
    split: Split, engine: object, tree: object, references: list[int], seed: int = 0
) -> list[RuleFirewallResult]:
    """The real rule labels screened: every training product on which the rules name exactly one
    class is labelled with it and judged against its true class. The screening model learns from
    the rule labels themselves (reference 0: 5-fold cross-fitting) or from ``reference`` people's
    labels (true classes of random other training products). Accuracy: a LinearSVC trained on the
    people's labels plus the rule labels, less the flagged ones, or with the true classes."""
    rules_rows, rules_y = rule_labelled(split, engine, tree)
    train_x, test_x = _features(split)
    truth = np.asarray(split.train_y)
    test_y = np.asarray(split.test_y)
    rng = np.random.default_rng(seed)
    results = []
    for reference in references:
        people = rng.choice(len(split.train), size=reference, replace=False)
        judged = ~np.isin(rules_rows, people)
        rows = np.concatenate([people, rules_rows[judged]])
        given = np.concatenate([truth[people], rules_y[judged]])
        trusted = np.arange(len(rows)) < reference
        x = train_x[rows]  # type: ignore[index]
        probabilities = out_of_sample_probabilities(
            x, given, len(split.labels), seed=seed, trusted=trusted if reference else None
        )
        found = find_suspects(
            given, probabilities, min_class_count=5, learned=trusted if reference else None
        )
        flagged = found.mask & ~trusted
        wrong = (given != truth[rows]) & ~trusted
        hits = int((flagged & wrong).sum())
        everything = np.ones(len(rows), dtype=bool)
        results.append(
            RuleFirewallResult(
                reference,
                int((~trusted).sum()),
                int(wrong.sum()),
                int(flagged.sum()),
                hits / max(1, int(flagged.sum())),
                hits / max(1, int(wrong.sum())),
                _accuracy(x, given, everything, test_x, test_y),
                _accuracy(x, given, ~flagged, test_x, test_y),
                _accuracy(x, truth[rows], everything, test_x, test_y),
            )
        )
    return results
