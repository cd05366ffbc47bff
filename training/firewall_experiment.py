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

from prodcat.training.dataset import Split
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
