"""A label firewall: which labels are likely wrong, by confident learning.

Confident learning (Northcutt, Jiang & Chuang, "Confident Learning: Estimating Uncertainty in
Dataset Labels", JAIR 2021) needs only out-of-sample probabilities ``p[i, k]`` (from a model that
did not train on label ``i``) and the given labels ``y``:

1. per class ``k``, a threshold ``t[k]`` = the mean of ``p[i, k]`` over the examples labelled
   ``k`` (the model's typical confidence in that class when it is the label);
2. an example's *confident class* is, among the classes with ``p[i, k] ≥ t[k]``, the one of
   highest ``p[i, k]`` (none when no class reaches its threshold);
3. a label is **suspect** when its example has a confident class and it is not the given label
   (the off-diagonal of the confident joint). Its score is the self-confidence ``p[i, y[i]]``:
   lower is more suspect.

:func:`out_of_sample_probabilities` makes ``p`` by K-fold cross-fitting (TF-IDF + LinearSVC, its
margins through a softmax).

:func:`screen` is the firewall of the retraining job (``streams/firewall.py`` applies it): every
live exclusive label is judged on cross-fitted probabilities from the labelled products' titles
and brands; a suspect label becomes a :class:`SuspectLabel` (held until a person confirms or
corrects it in the web UI's Review queue). A label a person confirmed is never held again (until
it changes); a held label the firewall no longer suspects is cleared.
Written for prodcat from the paper's definitions (no code taken from the reference library).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import numpy as np
import scipy.sparse as sp

from prodcat.core.ids import label_key

__all__ = [
    "HELD",
    "LabelFacts",
    "Screening",
    "SuspectLabel",
    "Suspects",
    "find_suspects",
    "out_of_sample_probabilities",
    "screen",
]

#: Statuses of a record on ``labels.suspect``: held by the firewall, or confirmed by a person
#: (a correction is a new label that is confirmed at once). A cleared suspect is a tombstone.
HELD: Final = "held"
CONFIRMED: Final = "confirmed"
STATUSES: Final = (HELD, CONFIRMED)
#: The label sources the screening model learns from when they are enough (``min_labels``):
#: labels made by a system (rules, mappings, imports of another system's output) are judged by a
#: model of people's labels, which does not share their systematic mistakes.
TRUSTED_SOURCES: Final = frozenset({"human"})
#: ``flagged_by`` of the holds a retraining job's screening makes (``"retrain v<N>"``); other
#: holds (a disagreement of two annotators) are kept until decided.
JOB_FLAG: Final = "retrain"
#: The highest per-class threshold (a probability this high is confident for any class).
MAX_THRESHOLD: Final = 0.99

Array = np.ndarray


@dataclass(frozen=True)
class Suspects:
    """Per example: suspect or not, the confident class (-1: none) and the self-confidence."""

    mask: Array
    confident: Array
    self_confidence: Array
    thresholds: Array

    @property
    def count(self) -> int:
        return int(self.mask.sum())


def find_suspects(
    labels: Sequence[int] | Array,
    probabilities: Array,
    *,
    min_class_count: int = 1,
    learned: Array | None = None,
) -> Suspects:
    """Confident learning over ``probabilities`` (n rows by classes, rows out of sample).

    ``min_class_count``: a class with fewer labels has no threshold (it never becomes a confident
    class) and its labels are not judged: too few examples to say what is typical of it (a new
    class enters with a single label). ``learned``: the rows whose labels the model learned from
    (default: all); a class none of them has is not judged either (the model cannot know it)."""
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probabilities, dtype=np.float64)
    n, classes = p.shape
    if len(y) != n:
        raise ValueError(f"{len(y)} labels for {n} rows of probabilities")
    sums = np.bincount(y, weights=p[np.arange(n), y], minlength=classes)
    counts = np.bincount(y, minlength=classes)
    taught = counts if learned is None else np.bincount(y[learned], minlength=classes)
    # A class no example is labelled with has no threshold: it never becomes a confident class.
    judged = (counts >= max(1, min_class_count)) & (taught > 0)
    thresholds = np.where(judged, sums / np.maximum(counts, 1), np.inf)
    # A saturated class (mean 1.0) would need 1.0 again: 0.99 is confident enough for any.
    above = p >= np.minimum(thresholds, MAX_THRESHOLD)[None, :]
    masked = np.where(above, p, -np.inf)
    confident = np.where(above.any(axis=1), masked.argmax(axis=1), -1)
    mask = (confident >= 0) & (confident != y) & judged[y]
    return Suspects(mask, confident, p[np.arange(n), y], thresholds)


def _softmax(scores: Array) -> Array:
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    out: Array = exp / exp.sum(axis=1, keepdims=True)
    return out


def _fitted_probabilities(
    features: sp.spmatrix | Array,
    y: Array,
    train: Array,
    held: Array,
    out: Array,
    seed: int,
    temperature: float,
) -> None:
    """``out[held]`` from a LinearSVC fitted on the rows ``train``."""
    from sklearn.svm import LinearSVC

    classes = np.unique(y[train])
    if len(classes) < 2:
        out[np.ix_(held, classes)] = 1.0
        return
    model = LinearSVC(C=1.0, random_state=seed).fit(features[train], y[train])
    margins = model.decision_function(features[held])
    if margins.ndim == 1:  # two classes: one margin
        margins = np.stack([-margins, margins], axis=1)
    out[np.ix_(held, model.classes_)] = _softmax(margins / temperature)


def out_of_sample_probabilities(
    features: sp.spmatrix | Array,
    labels: Sequence[int] | Array,
    n_classes: int,
    *,
    folds: int = 5,
    seed: int = 0,
    temperature: float = 0.1,
    trusted: Array | None = None,
) -> Array:
    """``p[i, k]`` for every row from a LinearSVC that did not train on row ``i``'s label;
    margins → softmax(margin / ``temperature``).

    Without ``trusted``, K-fold cross-fitting over every row. With ``trusted`` (a boolean mask:
    the labels a model may learn from, e.g. people's), trusted rows are cross-fitted among
    themselves and every other row is scored by a model fitted on all trusted rows: labels made
    by a system (keyword rules, feed mappings) are wrong as a function of the text itself, so a
    model fitted on them reproduces their mistakes instead of exposing them."""
    from sklearn.model_selection import KFold

    y = np.asarray(labels, dtype=np.int64)
    out = np.zeros((len(y), n_classes))
    rows = np.arange(len(y)) if trusted is None else np.flatnonzero(trusted)
    splitter = KFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, held in splitter.split(rows):
        _fitted_probabilities(features, y, rows[train], rows[held], out, seed, temperature)
    if trusted is not None and (~trusted).any():
        others = np.flatnonzero(~trusted)
        _fitted_probabilities(features, y, rows, others, out, seed, temperature)
    return out


# -- the retraining job's firewall -------------------------------------------------------------


@dataclass(frozen=True)
class LabelFacts:
    """A live exclusive label as the firewall sees it, with its product's text."""

    product_id: str
    category_id: str
    source: str
    annotator: str | None
    labelled_at: int
    text: str


@dataclass(frozen=True)
class SuspectLabel:
    """A record of ``labels.suspect`` (JSON, key = the label's key): a label the firewall holds,
    with the model's evidence, or a person's confirmation of it."""

    product_id: str
    category_id: str  # what the label says
    source: str
    annotator: str | None
    labelled_at: int  # of the label judged: a newer label is judged afresh
    status: str
    suggested_id: str | None  # the confident class the evidence points to
    self_confidence: float  # out-of-sample probability of the label's own class
    suggested_probability: float
    flagged_at: int
    flagged_by: str
    reviewed_by: str | None = None
    reviewed_at: int | None = None
    previous_category_id: str | None = None  # a correction: what the held label said

    @property
    def key(self) -> bytes:
        return label_key(self.product_id, "exclusive")

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True).encode()

    @classmethod
    def from_json(cls, value: bytes | str) -> SuspectLabel:
        data = json.loads(value)
        if data.get("status") not in STATUSES:
            raise ValueError(f"unknown suspect status {data.get('status')!r}")
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def covers(self, facts: LabelFacts) -> bool:
        """Whether this record is about that very label (same time and category)."""
        return (self.labelled_at, self.category_id) == (facts.labelled_at, facts.category_id)


@dataclass
class Screening:
    """What the firewall decided for one snapshot."""

    screened: int = 0
    reference: int = 0  # labels the screening model learned from (people's, when enough)
    skipped: str | None = None  # why nothing was judged (too few labels)
    held: list[SuspectLabel] = field(default_factory=list)
    cleared: list[str] = field(default_factory=list)  # product ids no longer suspect
    confirmed: int = 0  # labels a person confirmed: judged by nobody
    by_source: Counter[str] = field(default_factory=Counter)
    by_annotator: Counter[str] = field(default_factory=Counter)

    @property
    def held_ids(self) -> set[str]:
        return {s.product_id for s in self.held}

    def as_dict(self) -> dict[str, Any]:
        return {
            "screened": self.screened,
            "reference": self.reference,
            "skipped": self.skipped,
            "held": len(self.held),
            "cleared": len(self.cleared),
            "confirmed": self.confirmed,
            "held_by_source": dict(self.by_source),
            "held_by_annotator": dict(self.by_annotator),
        }


def screen(
    labels: Sequence[LabelFacts],
    reviews: Mapping[str, SuspectLabel],
    *,
    flagged_by: str,
    now_ms: int,
    min_labels: int = 200,
    min_class_count: int = 5,
    folds: int = 5,
    seed: int = 0,
) -> Screening:
    """Judge every label of ``labels`` but those a person confirmed (``reviews``: product id →
    its record on ``labels.suspect``). The screening model learns from people's labels
    (:data:`TRUSTED_SOURCES`, cross-fitted among themselves) when there are ``min_labels`` of
    them, else from every label (cross-fitted)."""
    result = Screening(screened=len(labels))
    previously_held = {pid for pid, r in reviews.items() if r.status == HELD}
    # Holds people's processes made (two annotators disagreeing) stay until someone decides or
    # the label changes: they are not the screening's to clear.
    for f in labels:
        r = reviews.get(f.product_id)
        ours = r is not None and r.flagged_by.startswith(JOB_FLAG)
        if r is not None and r.status == HELD and not ours and r.covers(f):
            result.held.append(r)
            result.by_source[r.source] += 1
            result.by_annotator[r.annotator or "-"] += 1
    decided = result.held_ids
    confirmed = [
        (r := reviews.get(f.product_id)) is not None and r.status == CONFIRMED and r.covers(f)
        for f in labels
    ]
    result.confirmed = sum(confirmed)
    exempt = np.array(confirmed, dtype=bool) | np.array(
        [f.product_id in decided for f in labels], dtype=bool
    )
    if len(labels) < min_labels:
        result.skipped = f"{len(labels)} exclusive labels, fewer than {min_labels}"
        result.cleared = sorted(previously_held - decided)
        return result
    from prodcat.training.al_learner import WordCharFeatures

    classes = sorted({f.category_id for f in labels})
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[f.category_id] for f in labels], dtype=np.int64)
    features = WordCharFeatures([f.text for f in labels]).pool
    trusted = np.array([f.source in TRUSTED_SOURCES for f in labels], dtype=bool)
    if trusted.sum() < min_labels:  # too few people's labels to teach alone: every label does
        trusted = np.ones(len(labels), dtype=bool)
    result.reference = int(trusted.sum())
    p = out_of_sample_probabilities(
        features, y, len(classes), folds=folds, seed=seed, trusted=trusted
    )
    found = find_suspects(y, p, min_class_count=max(min_class_count, folds), learned=trusted)
    rows = np.arange(len(labels))
    for i in rows[found.mask & ~exempt]:
        facts, suggested = labels[i], int(found.confident[i])
        before = reviews.get(facts.product_id)
        again = before is not None and before.status == HELD and before.covers(facts)
        result.held.append(
            SuspectLabel(
                product_id=facts.product_id,
                category_id=facts.category_id,
                source=facts.source,
                annotator=facts.annotator,
                labelled_at=facts.labelled_at,
                status=HELD,
                suggested_id=classes[suggested],
                self_confidence=round(float(found.self_confidence[i]), 6),
                suggested_probability=round(float(p[i, suggested]), 6),
                flagged_at=before.flagged_at if again and before else now_ms,
                flagged_by=before.flagged_by if again and before else flagged_by,
            )
        )
        result.by_source[facts.source] += 1
        result.by_annotator[facts.annotator or "-"] += 1
    result.cleared = sorted(previously_held - result.held_ids)
    return result
