"""Visual-similarity quality of an image embedder on the Myntra thumbnails.

Protocol: every image is a query; its neighbours are the other images ranked by cosine similarity (the
query itself excluded). Figures: precision@k of the query's ``articleType`` among the top k (divided by
k, so types with fewer than k + 1 images cap it below 1), the same with the candidates restricted to the
query's ``masterCategory`` (what a filtered vector search does), and nearest-neighbour top-1 accuracy.

The metric functions are pure numpy and take embeddings and labels; :func:`split_article_types` draws
the seeded, disjoint train/eval halves of the article types that fine-tuning uses.
"""

from __future__ import annotations

import csv
import logging
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from prodcat.training.exceptions import DatasetError

logger = logging.getLogger(__name__)

MYNTRA_DIR = "myntra"
LABELS_FILE = "labels.csv"
IMAGES_DIR = "images"
_CHUNK = 1024


@dataclass(frozen=True)
class MyntraImages:
    """The labelled thumbnails, one entry per image, in ``labels.csv`` order."""

    ids: tuple[str, ...]
    paths: tuple[Path, ...]
    article_types: tuple[str, ...]
    master_categories: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, indices: Sequence[int]) -> MyntraImages:
        return MyntraImages(
            ids=tuple(self.ids[i] for i in indices),
            paths=tuple(self.paths[i] for i in indices),
            article_types=tuple(self.article_types[i] for i in indices),
            master_categories=tuple(self.master_categories[i] for i in indices),
        )

    def of_types(self, types: Sequence[str]) -> MyntraImages:
        """The images whose article type is in ``types`` (order kept)."""
        wanted = set(types)
        return self.subset([i for i, t in enumerate(self.article_types) if t in wanted])


def load_myntra_images(data_dir: Path) -> MyntraImages:
    """Read ``myntra/labels.csv``; every listed image must exist."""
    root = Path(data_dir) / MYNTRA_DIR
    labels = root / LABELS_FILE
    try:
        with labels.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read {labels}: {exc}") from exc
    ids, paths, types, masters = [], [], [], []
    for line, row in enumerate(rows, start=2):
        try:
            filename, article, master = row["filename"], row["articleType"], row["masterCategory"]
        except KeyError as exc:
            raise DatasetError(f"{labels}: missing column {exc}") from exc
        if not filename or not article or not master:
            raise DatasetError(f"{labels}:{line}: empty filename, articleType or masterCategory")
        path = root / IMAGES_DIR / filename
        if not path.is_file():
            raise DatasetError(f"{labels}:{line}: image {path} not found")
        ids.append(row.get("id") or Path(filename).stem)
        paths.append(path)
        types.append(article)
        masters.append(master)
    if not ids:
        raise DatasetError(f"{labels} lists no images")
    return MyntraImages(tuple(ids), tuple(paths), tuple(types), tuple(masters))


def top_k_neighbours(
    embeddings: np.ndarray, k: int, groups: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The k most cosine-similar other rows of each row: (indices [n, k], valid [n, k]).

    With ``groups``, candidates are restricted to rows of the query's group. ``valid`` is False where
    fewer than k candidates exist (the index there is meaningless).
    """
    emb = np.asarray(embeddings, dtype=np.float64)
    if emb.ndim != 2:
        raise DatasetError(f"embeddings must be 2-D, got shape {emb.shape}")
    if k < 1:
        raise DatasetError(f"k must be >= 1, got {k}")
    n = emb.shape[0]
    if groups is not None and len(groups) != n:
        raise DatasetError(f"{len(groups)} groups for {n} embeddings")
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    emb = emb / np.where(norms > 0, norms, 1.0)
    group_ids = None if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]
    kk = min(k, max(n - 1, 1))
    indices = np.zeros((n, k), dtype=np.int64)
    valid = np.zeros((n, k), dtype=bool)
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        sims = emb[start:stop] @ emb.T
        sims[np.arange(stop - start), np.arange(start, stop)] = -np.inf
        if group_ids is not None:
            sims[group_ids[start:stop, None] != group_ids[None, :]] = -np.inf
        # Stable sort on (-similarity, index): ties go to the lower index, reproducibly.
        part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk] if kk < n else np.argsort(-sims)
        part = np.sort(part, axis=1)
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(part, order, axis=1)[:, :kk]
        indices[start:stop, :kk] = top
        valid[start:stop, :kk] = np.isfinite(np.take_along_axis(sims, top, axis=1))
    return indices, valid


def precision_at_k(
    embeddings: np.ndarray,
    labels: Sequence[str],
    k: int = 10,
    within: Sequence[str] | None = None,
) -> float:
    """Mean over queries of (same-label images among the top k) / k; ``within`` restricts candidates."""
    if len(labels) != len(embeddings):
        raise DatasetError(f"{len(labels)} labels for {len(embeddings)} embeddings")
    if len(labels) == 0:
        return 0.0
    indices, valid = top_k_neighbours(embeddings, k, within)
    lab = np.asarray(labels)
    hits = (lab[indices] == lab[:, None]) & valid
    return float(hits.sum(axis=1).mean() / k)


def nn_top1_accuracy(embeddings: np.ndarray, labels: Sequence[str]) -> float:
    """Share of queries whose nearest other image has the same label."""
    return precision_at_k(embeddings, labels, k=1)


def precision_ceiling(labels: Sequence[str], k: int = 10) -> float:
    """The best precision@k any embedding can reach (types with <= k images cap it)."""
    counts = Counter(labels)
    if not counts:
        return 0.0
    return float(np.mean([min(counts[label] - 1, k) / k for label in labels]))


@dataclass(frozen=True)
class SimilarityReport:
    """The figures of one embedder on one set of images."""

    images: int
    article_types: int
    k: int
    precision_at_k: float
    precision_at_k_within_master: float
    nn_top1: float
    precision_ceiling: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def evaluate_embeddings(
    embeddings: np.ndarray,
    article_types: Sequence[str],
    master_categories: Sequence[str],
    k: int = 10,
) -> SimilarityReport:
    """All figures of :class:`SimilarityReport` for embeddings and their labels."""
    return SimilarityReport(
        images=len(article_types),
        article_types=len(set(article_types)),
        k=k,
        precision_at_k=precision_at_k(embeddings, article_types, k),
        precision_at_k_within_master=precision_at_k(
            embeddings, article_types, k, within=master_categories
        ),
        nn_top1=nn_top1_accuracy(embeddings, article_types),
        precision_ceiling=precision_ceiling(article_types, k),
    )


def split_article_types(
    article_types: Sequence[str],
    master_categories: Sequence[str],
    seed: int = 0,
) -> tuple[list[str], list[str]]:
    """Disjoint (train, eval) halves of the article types, stratified by master category.

    A type belongs to its most frequent master category. Within each master category the types are
    shuffled with ``seed`` and dealt alternately; the side that starts alternates between master
    categories (largest first) so both halves get about half the types, and a master category with two
    or more types appears in both. Deterministic for a given seed and label set.
    """
    if len(article_types) != len(master_categories):
        raise DatasetError(f"{len(article_types)} types for {len(master_categories)} masters")
    votes: dict[str, Counter[str]] = defaultdict(Counter)
    for article, master in zip(article_types, master_categories, strict=True):
        votes[article][master] += 1
    by_master: dict[str, list[str]] = defaultdict(list)
    for article in sorted(votes):
        master = min(votes[article].items(), key=lambda kv: (-kv[1], kv[0]))[0]
        by_master[master].append(article)
    rng = random.Random(seed)
    train: list[str] = []
    evaluation: list[str] = []
    first = 0
    for master in sorted(by_master, key=lambda m: (-len(by_master[m]), m)):
        types = by_master[master]
        rng.shuffle(types)
        for i, article in enumerate(types):
            (train if (i + first) % 2 == 0 else evaluation).append(article)
        first = (first + len(types)) % 2
    return sorted(train), sorted(evaluation)
