"""How much a feed-category mapping saves, measured offline (``prodcat experiment mappings``).

On a labelled catalogue (Flipkart, or ``--data FEED --truth TRUTH``) as a new customer starts:

1. ``--labels`` random products are labelled by people (their truth at ``--level``);
2. a TF-IDF (word + char) + LinearSVC model trained on them (title and brand only: it never reads
   the feed's category) predicts every other product;
3. :func:`prodcat.training.mappings.mine` maps each (feed, feed path) to a node from those
   predictions and labels;
4. an operator approves every row with support ≥ ``min_support`` and purity ≥ ``approve_purity``
   (one key each), which labels the unlabelled products of those feed paths.

Reported: approvals, products labelled per approval, the accuracy of the mapping-derived labels
against the truth (exact node at the level, and "on the path": the node, when shallower, is an
ancestor of the truth), the model's own accuracy on the same products, for comparison, and the
model's accuracy with the mapping as a prior (its best class within the mapped node's subtree, as
``PRODCAT_SERVING__MAPPING_PRIOR`` does in the classify stage).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from prodcat.training.dataset import Example
from prodcat.training.exceptions import TrainingError
from prodcat.training.mappings import Evidence, is_under, mine


@dataclass
class MappingResult:
    products: int
    labelled: int
    candidates: int
    approved: int
    mapped_products: int
    per_approval_median: float
    per_approval_mean: float
    exact: float  # mapping labels equal to the truth node at the level
    on_path: float  # the mapped node is the truth node or one of its ancestors
    model_exact: float  # the model's own predictions on the same products
    shallower: int  # mapping labels above the level (backed off to a parent)
    prior_exact: float = 0.0  # the model's best class within the mapped subtree

    def row(self, name: str) -> str:
        return (
            f"| {name} | {self.products:,} | {self.labelled:,} | {self.approved:,} of "
            f"{self.candidates:,} | {self.mapped_products:,} | {self.per_approval_median:,.0f} "
            f"({self.per_approval_mean:,.1f}) | {self.exact:.4f} | {self.on_path:.4f} | "
            f"{self.model_exact:.4f} | {self.prior_exact:.4f} | {self.shallower:,} |"
        )


HEADER = (
    "| data | products | labelled by people | approved mappings (of rows) | products labelled by "
    "mappings | per approval, median (mean) | mapping labels = truth | on the truth's path | "
    "model on the same products | model with the mapping as a prior | backed off to a parent |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def run(
    examples: Sequence[Example],
    *,
    level: int = 3,
    labels: int = 1000,
    seed: int = 0,
    min_support: int = 5,
    min_purity: float = 0.8,
    approve_purity: float = 0.9,
) -> MappingResult:
    from sklearn.svm import LinearSVC

    from prodcat.training.al_learner import WordCharFeatures

    rows = [e for e in examples if len(e.path) >= level and e.raw_path]
    if len(rows) < 2 * labels:
        raise TrainingError(
            f"{len(rows):,} products have both a feed category path and a truth {level} levels "
            f"deep, too few for {labels:,} labels; try a lower --level or fewer --labels"
        )
    truth = [tuple(e.path[:level]) for e in rows]
    rng = np.random.default_rng(seed)
    chosen = set(rng.choice(len(rows), size=min(labels, len(rows)), replace=False).tolist())
    texts = [f"{e.title} {e.brand or ''}".strip() for e in rows]
    features = WordCharFeatures(texts).pool
    train = sorted(chosen)
    model = LinearSVC(C=1.0, random_state=seed).fit(
        features[train], [" > ".join(truth[i]) for i in train]
    )
    predicted = [tuple(p.split(" > ")) for p in model.predict(features)]
    evidence = [
        Evidence(
            "feed",
            tuple(e.raw_path),
            predicted[i],
            truth[i] if i in chosen else (),
        )
        for i, e in enumerate(rows)
    ]
    table = mine(evidence, min_support=min_support, min_purity=min_purity)
    approved = {
        c.feed_path: c for c in table if c.support >= min_support and c.purity >= approve_purity
    }
    by_path: dict[tuple[str, ...], list[int]] = {}
    for i, e in enumerate(rows):
        if i not in chosen:
            by_path.setdefault(tuple(e.raw_path), []).append(i)
    mapped: list[int] = []
    sizes: list[int] = []
    for feed_path in approved:
        members = by_path.get(feed_path, [])
        sizes.append(len(members))
        mapped.extend(members)
    exact = on_path = model_exact = shallower = prior_exact = 0
    classes = [tuple(str(c).split(" > ")) for c in model.classes_]
    scores = model.decision_function(features[mapped]) if mapped else np.zeros((0, 0))
    if scores.ndim == 1:  # two classes: one column, positive = the second
        scores = np.stack([-scores, scores], axis=1)
    for row, i in enumerate(mapped):
        node = approved[tuple(rows[i].raw_path)].path
        exact += node == truth[i]
        on_path += truth[i][: len(node)] == node
        shallower += len(node) < level
        model_exact += predicted[i] == truth[i]
        inside = [j for j, c in enumerate(classes) if is_under(c, node)]
        if not inside:  # a node deeper than the classes: the deepest class on its path
            on = [(len(c), j) for j, c in enumerate(classes) if is_under(node, c)]
            inside = [j for depth, j in on if depth == max(on)[0]] if on else []
        best = max(inside, key=lambda j: scores[row, j]) if inside else int(scores[row].argmax())
        prior_exact += classes[best] == truth[i]
    n = len(mapped) or 1
    return MappingResult(
        products=len(rows),
        labelled=len(chosen),
        candidates=len(table),
        approved=len(approved),
        mapped_products=len(mapped),
        per_approval_median=statistics.median(sizes) if sizes else 0.0,
        per_approval_mean=statistics.fmean(sizes) if sizes else 0.0,
        exact=exact / n,
        on_path=on_path / n,
        model_exact=model_exact / n,
        shallower=shallower,
        prior_exact=prior_exact / n,
    )
