"""Learning curves of the active-learning experiment: CSV, PNG (matplotlib) and a Markdown summary."""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from prodcat.training.active_learning import Point, stopping_point
from prodcat.training.dataset import DEMO_DATASET

CSV_FIELDS = (
    "strategy",
    "rules",
    "seed",
    "labels",
    "accuracy",
    "seconds",
    "learner",
    "dataset",
    "stability",
)


def _row(point: Point) -> dict[str, object]:
    return {
        **asdict(point),
        "accuracy": f"{point.accuracy:.4f}",
        "seconds": f"{point.seconds:.2f}",
        "stability": "" if point.stability is None else f"{point.stability:.4f}",
    }


def write_csv(points: Iterable[Point], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(_row(point) for point in points)
    return path


def append_csv(point: Point, path: Path) -> None:
    """Add one point to a CSV that :func:`write_csv` started (points survive an interrupted run)."""
    with path.open("a", encoding="utf-8", newline="") as handle:
        csv.DictWriter(handle, fieldnames=CSV_FIELDS).writerow(_row(point))


def read_csv(path: Path) -> list[Point]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [
            Point(
                strategy=row["strategy"],
                rules=row["rules"] == "True",
                seed=int(row["seed"]),
                labels=int(row["labels"]),
                accuracy=float(row["accuracy"]),
                seconds=float(row["seconds"]),
                learner=row.get("learner") or "ffn",  # files from before the column
                dataset=row.get("dataset") or DEMO_DATASET,
                stability=float(row["stability"]) if row.get("stability") else None,
            )
            for row in csv.DictReader(handle)
        ]


def curves(points: Iterable[Point]) -> dict[tuple[str, bool], dict[int, list[float]]]:
    """(strategy, rules) → labels → accuracies over seeds (of one learner and dataset)."""
    out: dict[tuple[str, bool], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for p in points:
        out[(p.strategy, p.rules)][p.labels].append(p.accuracy)
    return out


def experiments(points: Iterable[Point]) -> dict[tuple[str, str], list[Point]]:
    """(dataset, learner) → its points, in the order first seen."""
    out: dict[tuple[str, str], list[Point]] = {}
    for p in points:
        out.setdefault((p.dataset, p.learner), []).append(p)
    return out


def curve_name(strategy: str, rules: bool) -> str:
    return f"{strategy} + rules" if rules else strategy


def labels_to_reach(curve: dict[int, list[float]], target: float) -> float | None:
    """Labels at which a mean curve first reaches ``target`` (linear interpolation), None if never."""
    sizes = sorted(curve)
    means = [float(np.mean(curve[s])) for s in sizes]
    for i, (size, mean) in enumerate(zip(sizes, means, strict=True)):
        if mean >= target:
            if i == 0:
                return float(size)
            lo, lo_mean = sizes[i - 1], means[i - 1]
            return lo + (size - lo) * (target - lo_mean) / (mean - lo_mean)
    return None


def _at(curve: dict[int, list[float]], size: int) -> str:
    values = curve.get(size)
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{np.mean(values):.4f} ± {np.std(values):.4f}"


def _stable(points: Sequence[Point], strategy: str, rules: bool) -> str:
    """Where the stopping criterion stops each seed's curve (mean over the seeds that stop)."""
    stops = []
    for seed in sorted({p.seed for p in points}):
        curve = [p for p in points if (p.strategy, p.rules, p.seed) == (strategy, rules, seed)]
        if not any(p.stability is not None for p in curve):
            return "—"  # curves from before the criterion was recorded
        stop = stopping_point(curve)
        if stop is not None:
            stops.append(stop)
    if not stops:
        return "not within the curve"
    labels = float(np.mean([p.labels for p in stops]))
    accuracy = float(np.mean([p.accuracy for p in stops]))
    return f"{labels:,.0f}: {accuracy:.4f}" + (f" ({len(stops)} seeds)" if len(stops) > 1 else "")


def summary(points: Sequence[Point], checkpoints: Sequence[int] = (1000, 2000)) -> str:
    """Per dataset and learner, a Markdown table (mean ± std over seeds) and the random-labels
    equivalent of each curve (against the random curve of the same learner)."""
    groups = experiments(points)
    if len(groups) <= 1:
        return _summary_table(points, checkpoints)
    parts = []
    for (dataset, learner), members in groups.items():
        parts.append(f"**{dataset}, learner {learner}**\n\n{_summary_table(members, checkpoints)}")
    return "\n\n".join(parts)


def _summary_table(points: Sequence[Point], checkpoints: Sequence[int]) -> str:
    table = curves(points)
    random_curve = {}
    for key in (("random", False), ("random", True)):
        if key in table:
            random_curve[key[1]] = table[key]
    header = [
        "strategy",
        *(f"acc @ {c}" for c in checkpoints),
        "random labels for the same acc",
        "predictions stable at (labels: acc)",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    last = max(checkpoints)
    ranked = sorted(
        table.items(),
        key=lambda item: -float(np.mean(item[1].get(last, [0.0]))),
    )
    for (strategy, rules), curve in ranked:
        reference = random_curve.get(rules) or random_curve.get(False)
        equivalent = "—"
        if reference is not None and curve.get(last) and strategy != "random":
            reached = labels_to_reach(reference, float(np.mean(curve[last])))
            top = max(reference)
            equivalent = f"{reached:,.0f}" if reached is not None else f"> {top:,}"
        cells = [
            curve_name(strategy, rules),
            *(_at(curve, c) for c in checkpoints),
            equivalent,
            _stable(points, strategy, rules),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(points: Sequence[Point], path: Path, *, title: str = "") -> Path:
    """Mean accuracy vs labels for every (strategy, rules) curve, with the seeds' range shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = experiments(points)
    table: dict[tuple[str, bool], dict[int, list[float]]] = {}
    for (dataset, learner), members in groups.items():
        suffix = (
            ""
            if len(groups) == 1
            else f" [{learner}" + (f", {dataset}]" if len({d for d, _ in groups}) > 1 else "]")
        )
        for (strategy, rules_on), curve in curves(members).items():
            table[(strategy + suffix, rules_on)] = curve
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    for ax, rules in zip(axes, (False, True), strict=True):
        for (strategy, with_rules), curve in sorted(table.items()):
            if with_rules != rules:
                continue
            sizes = sorted(curve)
            mean = np.array([np.mean(curve[s]) for s in sizes])
            low = np.array([np.min(curve[s]) for s in sizes])
            high = np.array([np.max(curve[s]) for s in sizes])
            style = "--" if strategy.startswith("random") else "-"
            (line,) = ax.plot(sizes, mean, style, marker=".", label=strategy)
            ax.fill_between(sizes, low, high, color=line.get_color(), alpha=0.15)
        ax.set_title("with the rule-based objective" if rules else "exclusive objective only")
        ax.set_xscale("log")  # the rounds up to 2,000 and the random curve to the whole pool
        ticks = [
            t for t in (200, 500, 1000, 2000, 5000, 10000) if t <= max(p.labels for p in points)
        ]
        ax.set_xticks(ticks, [f"{t:,}" for t in ticks])
        ax.set_xlabel("human labels (log scale)")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8, loc="lower right")
    axes[0].set_ylabel("test accuracy (L3)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
