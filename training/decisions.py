"""Predictions that know their limits: the deepest category that meets a precision target.

A classifier's exclusive head gives a probability per class; a class is a path in the tree, so an
ancestor node's score is the summed probability of the classes under it. For a precision target
``p`` (e.g. 0.95), :func:`fit_thresholds` chooses on held-out products, per node, the lowest score
at which emitting that node is right at least a share ``p`` of the time: the products whose
predicted path runs through the node are sorted by the node's score, and the threshold is the
score of the last product of the longest prefix whose precision is at least ``p``. A node with
fewer than ``min_support`` held-out products takes the threshold pooled over its depth; a node
(or depth) that never reaches ``p`` gets no threshold and is never emitted.

:func:`decide` walks the predicted path from the leaf up and emits the deepest node whose score
meets its threshold: ``leaf`` (the predicted class itself), ``backed_off`` (an ancestor) or
``abstained`` (none). Downstream consumers can rely on every emitted category meeting the target
(on data like the held-out products); :func:`coverage_report` says how many products get a
category at each depth and how precise those are.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from prodcat.core.ids import normalize_name, path_id

__all__ = [
    "ABSTAINED",
    "BACKED_OFF",
    "LEAF",
    "Decision",
    "DecisionModel",
    "coverage_report",
    "fit_thresholds",
]

Array = np.ndarray[Any, Any]
Path = tuple[str, ...]

LEAF: Final = "leaf"
BACKED_OFF: Final = "backed_off"
ABSTAINED: Final = "abstained"


def _key(path: Sequence[str]) -> Path:
    return tuple(normalize_name(level) for level in path)


@dataclass(frozen=True)
class Decision:
    kind: str  # leaf | backed_off | abstained
    category_id: str | None
    path: Path
    probability: float


class DecisionModel:
    """Node scores of a classifier's classes and the thresholds chosen for them."""

    def __init__(
        self,
        class_ids: Sequence[str],
        class_paths: Sequence[Sequence[str]],
        thresholds: Mapping[str, float] | None = None,
        target: float | None = None,
    ) -> None:
        self.class_ids = list(class_ids)
        self.class_paths = [tuple(p) for p in class_paths]
        nodes: dict[Path, int] = {}
        names: list[Path] = []
        for path in self.class_paths:
            for depth in range(1, len(path) + 1):
                key = _key(path[:depth])
                if key not in nodes:
                    nodes[key] = len(names)
                    names.append(path[:depth])
        self.nodes = nodes
        self.node_paths = names
        # A class's own node keeps the class id; an ancestor is named by its path id.
        own = {_key(p): cid for cid, p in zip(self.class_ids, self.class_paths, strict=True)}
        self.node_ids = [own.get(_key(p), path_id(p)) for p in names]
        membership = np.zeros((len(self.class_ids), len(names)), dtype=np.float32)
        for row, path in enumerate(self.class_paths):
            for depth in range(1, len(path) + 1):
                membership[row, nodes[_key(path[:depth])]] = 1.0
        self.membership = membership
        self.thresholds: dict[str, float] = dict(thresholds or {})
        self.target = target

    def node_scores(self, probs: Array) -> Array:
        return np.asarray(probs, dtype=np.float32) @ self.membership

    def chains(self, probs: Array) -> list[list[int]]:
        """Per product, the node indexes of its predicted path, deepest first."""
        out = []
        for leaf in np.asarray(probs).argmax(axis=1):
            path = self.class_paths[int(leaf)]
            out.append([self.nodes[_key(path[:d])] for d in range(len(path), 0, -1)])
        return out

    def decide(self, probs: Array) -> list[Decision]:
        scores = self.node_scores(probs)
        decisions = []
        for row, chain in enumerate(self.chains(probs)):
            decision = Decision(
                ABSTAINED, None, (), float(scores[row, chain[-1]]) if chain else 0.0
            )
            for position, node in enumerate(chain):
                threshold = self.thresholds.get(self.node_ids[node])
                if threshold is not None and scores[row, node] >= threshold:
                    decision = Decision(
                        LEAF if position == 0 else BACKED_OFF,
                        self.node_ids[node],
                        self.node_paths[node],
                        float(scores[row, node]),
                    )
                    break
            decisions.append(decision)
        return decisions

    def to_card(self) -> dict[str, Any]:
        return {"target": self.target, "thresholds": dict(self.thresholds)}


def _threshold(scores: Array, correct: Array, target: float) -> float | None:
    """The lowest score keeping precision >= target over every product scored at least as high."""
    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    hits = np.cumsum(correct[order])
    precision = hits / np.arange(1, len(order) + 1)
    # Only cut between different scores: a threshold admits every product tied at it.
    ends = np.append(ranked[1:] < ranked[:-1], True)
    ok = np.nonzero((precision >= target) & ends)[0]
    if len(ok) == 0:
        return None
    return float(ranked[ok[-1]])


def fit_thresholds(
    model: DecisionModel,
    probs: Array,
    truth_paths: Sequence[Sequence[str]],
    *,
    target: float,
    min_support: int = 20,
) -> DecisionModel:
    """``model`` with per-node thresholds for ``target`` precision, from held-out ``probs`` and
    their true paths (see the module docstring)."""
    scores = model.node_scores(probs)
    truth = [_key(path) for path in truth_paths]
    per_node: dict[int, list[tuple[float, bool]]] = defaultdict(list)
    for row, chain in enumerate(model.chains(probs)):
        for node in chain:
            node_key = _key(model.node_paths[node])
            right = truth[row][: len(node_key)] == node_key
            per_node[node].append((float(scores[row, node]), right))
    by_depth: dict[int, list[tuple[float, bool]]] = defaultdict(list)
    for node, items in per_node.items():
        by_depth[len(model.node_paths[node])].extend(items)
    pooled = {
        depth: _threshold(
            np.array([s for s, _ in items]), np.array([c for _, c in items], float), target
        )
        for depth, items in by_depth.items()
    }
    thresholds: dict[str, float] = {}
    for node in range(len(model.node_paths)):
        items = per_node.get(node, [])
        if len(items) >= min_support:
            found = _threshold(
                np.array([s for s, _ in items]), np.array([c for _, c in items], float), target
            )
        else:
            found = pooled.get(len(model.node_paths[node]))
        if found is not None:
            thresholds[model.node_ids[node]] = found
    return DecisionModel(model.class_ids, model.class_paths, thresholds, target)


@dataclass(frozen=True)
class LevelCoverage:
    depth: int
    products: int
    covered: int  # products given a category at this depth or deeper
    correct: int  # of those, right at this depth

    @property
    def coverage(self) -> float:
        return self.covered / self.products if self.products else 0.0

    @property
    def precision(self) -> float:
        return self.correct / self.covered if self.covered else 0.0


def coverage_report(
    decisions: Sequence[Decision], truth_paths: Sequence[Sequence[str]]
) -> list[LevelCoverage]:
    """Per depth: how many products got a category at least that deep, and how many of those are
    right at that depth (their emitted path's prefix is the truth's)."""
    depth_max = max((len(p) for p in truth_paths), default=0)
    out = []
    for depth in range(1, depth_max + 1):
        rows = [i for i, t in enumerate(truth_paths) if len(t) >= depth]
        covered = [i for i in rows if len(decisions[i].path) >= depth]
        correct = sum(
            1 for i in covered if _key(decisions[i].path[:depth]) == _key(truth_paths[i][:depth])
        )
        out.append(LevelCoverage(depth, len(rows), len(covered), correct))
    return out
