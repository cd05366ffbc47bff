"""Prediction drift: a model's training reference, tumbling windows of live predictions, and PSI.

At export time every classifier version gets ``drift_reference.json`` beside its model card: the
distribution of its top-1 exclusive category and a fine histogram of its top-1 confidence, both
over held-out data (the protocol's test split, or the retraining holdout). The drift agent
(``prodcat.streams.drift_agent``) gathers the live predictions of that version in tumbling windows and
compares each closed window with the reference.

**Population stability index** over ``k`` bins, with window shares ``a_i`` and reference shares
``e_i`` (counts over their totals), each smoothed with ``epsilon`` so that an empty bin on either
side gives a large but finite term::

    a_i = (count_i / n + epsilon) / (1 + k * epsilon)        (the same for e_i)
    PSI = sum_i (a_i - e_i) * ln(a_i / e_i)

PSI is 0 for identical distributions and grows with the shift; the usual reading is < 0.1 stable,
0.1-0.25 moderate, > 0.25 a significant change. Without any drift, sampling noise alone gives a
window of ``n`` predictions against a reference of ``m`` over ``k`` non-empty bins a PSI of about::

    expected = (k - 1) * (1 / n + 1 / m)

(PSI is the symmetric J-divergence, ``n * PSI`` behaves like a chi-square with ``k - 1`` degrees of
freedom). With hundreds of leaf categories that floor is far from 0 (253 classes, n = 5,000,
m = 3,504: 0.12), so every score carries its expected value, and the alert reads the excess
``psi - expected``, not the raw index.

Confidence bins: the reference holds counts over ``FINE_BINS`` equal-width bins of [0, 1]; both
sides are merged into ``bins`` groups holding about equal reference mass (quantile bins of the
reference), so a confident model, whose top-1 probabilities crowd near 1, is still binned finely
where its mass lies.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prodcat.training.exceptions import TrainingError

REFERENCE = "drift_reference.json"
FORMAT = 1
FINE_BINS = 100
DEFAULT_EPSILON = 1e-4

Array = np.ndarray[Any, Any]


class DriftReferenceError(TrainingError, ValueError):
    """A drift reference file that cannot be used (unreadable, or not this format)."""


def psi(
    actual: Sequence[float], expected: Sequence[float], epsilon: float = DEFAULT_EPSILON
) -> float:
    """Population stability index of two count (or share) vectors over the same bins."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape or a.ndim != 1 or not len(a):
        raise ValueError(f"PSI needs two equally long 1-D count vectors, got {a.shape}, {e.shape}")
    if (a < 0).any() or (e < 0).any() or a.sum() <= 0 or e.sum() <= 0:
        raise ValueError("PSI needs non-negative counts with a positive total on each side")
    k = len(a)
    a = (a / a.sum() + epsilon) / (1 + k * epsilon)
    e = (e / e.sum() + epsilon) / (1 + k * epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def fine_bin(confidence: float) -> int:
    """The equal-width bin of [0, 1] a top-1 probability falls in (1.0 in the last)."""
    return min(FINE_BINS - 1, max(0, int(confidence * FINE_BINS)))


def confidence_groups(reference_counts: Sequence[int], bins: int) -> list[int]:
    """For each fine bin, the group it is merged into: up to ``bins`` groups of about equal
    reference mass. A group ends at the fine bin where the reference's cumulative share reaches
    the next multiple of ``1 / bins``, so a fine bin holding more than one group's share stands
    alone and the empty stretch below the reference's mass is a group of its own."""
    counts = np.asarray(reference_counts, dtype=np.float64)
    total = counts.sum()
    through = np.cumsum(counts) / total if total > 0 else np.zeros(len(counts))
    return [min(bins - 1, max(0, math.ceil(share * bins - 1e-9) - 1)) for share in through]


def merge(counts: Sequence[int], groups: Sequence[int]) -> list[int]:
    """Fine-bin counts summed by group (only the groups that occur, in order)."""
    out: dict[int, int] = {}
    for count, group in zip(counts, groups, strict=True):
        out[group] = out.get(group, 0) + int(count)
    return [out[g] for g in sorted(out)]


@dataclass(frozen=True)
class DriftReference:
    """What a model version predicted on held-out data at training time."""

    categories: dict[str, int]
    confidence: tuple[int, ...]  # counts over FINE_BINS equal-width bins of [0, 1]
    size: int
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "source": self.source,
            "size": self.size,
            "categories": self.categories,
            "confidence_bins": FINE_BINS,
            "confidence_counts": list(self.confidence),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> DriftReference:
        try:
            if raw.get("format") != FORMAT or raw.get("confidence_bins") != FINE_BINS:
                raise DriftReferenceError(
                    f"unsupported drift reference (format {raw.get('format')!r}, "
                    f"{raw.get('confidence_bins')!r} confidence bins)"
                )
            categories = {str(k): int(v) for k, v in dict(raw["categories"]).items()}
            confidence = tuple(int(v) for v in raw["confidence_counts"])
            size = int(raw["size"])
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, DriftReferenceError):
                raise
            raise DriftReferenceError(f"malformed drift reference: {exc!r}") from exc
        counts = [*categories.values(), *confidence]
        if (
            len(confidence) != FINE_BINS
            or size <= 0
            or any(c < 0 for c in counts)
            or sum(categories.values()) != size
            or sum(confidence) != size
        ):
            raise DriftReferenceError("drift reference counts are negative or do not add up")
        return cls(categories, confidence, size, str(raw.get("source", "")))

    def write(self, version_dir: Path) -> Path:
        path = version_dir / REFERENCE
        path.write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")
        return path

    @classmethod
    def read(cls, version_dir: Path) -> DriftReference:
        """The reference beside a version's model card; OSError if there is none."""
        text = (version_dir / REFERENCE).read_text(encoding="utf-8")
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise DriftReferenceError(f"{version_dir / REFERENCE}: {exc}") from exc
        if not isinstance(raw, Mapping):
            raise DriftReferenceError(f"{version_dir / REFERENCE}: not a JSON object")
        return cls.from_dict(raw)


def build_reference(probs: Array, class_ids: Sequence[str], source: str) -> DriftReference:
    """The reference of a model from its exclusive probabilities [n, classes] on held-out data."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(class_ids) or probs.shape[0] == 0:
        raise ValueError(
            f"need probabilities [n > 0, {len(class_ids)}] for a drift reference, got {probs.shape}"
        )
    top = probs.argmax(axis=1)
    counts = np.bincount(top, minlength=len(class_ids))
    categories = {cid: int(c) for cid, c in zip(class_ids, counts, strict=True)}
    confidence = np.bincount([fine_bin(p) for p in probs.max(axis=1)], minlength=FINE_BINS).tolist()
    return DriftReference(categories, tuple(confidence), int(probs.shape[0]), source)


@dataclass(frozen=True)
class DriftScore:
    """PSI of one closed window against its model version's reference."""

    model: str
    version: int
    predictions: int
    category_psi: float
    confidence_psi: float
    category_expected: float = 0.0
    confidence_expected: float = 0.0


@dataclass
class DriftWindow:
    """Top-1 categories and confidences of one model version's predictions since ``opened_at``."""

    model: str
    version: int
    opened_at: float
    categories: Counter[str] = field(default_factory=Counter)
    confidence: list[int] = field(default_factory=lambda: [0] * FINE_BINS)
    size: int = 0

    def add(self, category: str, confidence: float) -> None:
        self.categories[category] += 1
        self.confidence[fine_bin(confidence)] += 1
        self.size += 1

    def score(self, reference: DriftReference, bins: int, epsilon: float) -> DriftScore:
        """PSI of this window against ``reference`` (categories over the union of both sides)."""
        keys = sorted(set(reference.categories) | set(self.categories))
        category = psi(
            [self.categories.get(k, 0) for k in keys],
            [reference.categories.get(k, 0) for k in keys],
            epsilon,
        )
        groups = confidence_groups(reference.confidence, bins)
        live, expected = merge(self.confidence, groups), merge(reference.confidence, groups)
        confidence = psi(live, expected, epsilon)
        return DriftScore(
            self.model,
            self.version,
            self.size,
            category,
            confidence,
            category_expected=noise_floor(len(keys), self.size, reference.size),
            confidence_expected=noise_floor(
                sum(1 for a, e in zip(live, expected, strict=True) if a or e),
                self.size,
                reference.size,
            ),
        )


def noise_floor(bins: int, n: int, m: int) -> float:
    """PSI expected from sampling alone: ``bins`` non-empty bins, samples of ``n`` and ``m``."""
    if bins < 2 or n <= 0 or m <= 0:
        return 0.0
    return (bins - 1) * (1.0 / n + 1.0 / m)


def top1(prediction: Mapping[str, Any]) -> tuple[str, float] | None:
    """The top-1 exclusive category and its probability, or None when the prediction has none
    that is a probability (the agent dead-letters it)."""
    top = prediction.get("exclusive_top_k") or []
    if not top or not prediction.get("model_name"):
        return None
    best = max(top, key=lambda c: c.get("probability", -1.0))
    probability = best.get("probability")
    category = best.get("category_id")
    if not category or not isinstance(probability, float | int) or not math.isfinite(probability):
        return None
    if not 0.0 <= probability <= 1.0:
        return None
    return str(category), float(probability)


class WindowSet:
    """Tumbling windows, one per model name, for the newest version seen of that model.

    A window closes when it holds ``size`` predictions, or when it is ``max_age_s`` old and holds
    at least ``min_size`` (a quiet model keeps gathering until it has enough for a stable PSI).
    A newer version of a model retires the window of the older one (scored if it is big enough);
    predictions of an older version arriving after that are stale and must be left out, until
    the newer version has been silent for ``max_age_s``: then the older one serves again (a
    rollback, or a stray record with a version that never served) and takes over.
    """

    def __init__(self, size: int, max_age_s: float, min_size: int) -> None:
        self.size = size
        self.max_age_s = max_age_s
        self.min_size = min_size
        self._windows: dict[str, DriftWindow] = {}
        self._newest: dict[str, int] = {}
        self._seen: dict[str, float] = {}  # model → when its newest version last predicted

    def is_stale(self, model: str, version: int, now: float) -> bool:
        """True for a version older than the newest of the model, while the newest is live."""
        newest = self._newest.get(model, version)
        return version < newest and now - self._seen.get(model, now) < self.max_age_s

    def advance(self, model: str, version: int, now: float) -> list[DriftWindow]:
        """Note that ``version`` of ``model`` predicted at ``now``; a newer one (or an older one
        once the newest is silent) retires the other version's window, returned if it is big
        enough to score."""
        newest = self._newest.get(model)
        if newest == version:
            self._seen[model] = now
            return []
        if newest is not None and self.is_stale(model, version, now):
            return []
        self._newest[model] = version
        self._seen[model] = now
        window = self._windows.pop(model, None)
        return [window] if window is not None and window.size >= self.min_size else []

    def add(
        self, model: str, version: int, category: str, confidence: float, now: float
    ) -> list[DriftWindow]:
        """Take one prediction; returns the windows it closed (the older version's, this one's)."""
        if self.is_stale(model, version, now):
            raise ValueError(f"{model} v{version} is older than v{self._newest[model]}")
        closed = self.advance(model, version, now)
        window = self._windows.get(model)
        if window is None:
            window = self._windows[model] = DriftWindow(model, version, now)
        window.add(category, confidence)
        if window.size >= self.size:
            closed.append(window)
            del self._windows[model]
        return closed

    def expire(self, now: float) -> list[DriftWindow]:
        """Windows old enough and big enough to close now."""
        closed = [
            w
            for w in self._windows.values()
            if now - w.opened_at >= self.max_age_s and w.size >= self.min_size
        ]
        for window in closed:
            del self._windows[window.model]
        return closed
