"""``prodcat experiment active-learning``: run the simulation, write curves (CSV, PNG) and a summary."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from training.active_learning import STRATEGIES, ExperimentConfig, Point, run_experiment
from training.al_report import CSV_FIELDS, plot, read_csv, summary, write_csv

logger = logging.getLogger(__name__)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def experiment_config(
    *,
    strategies: str | None = None,
    seeds: str | None = None,
    rules: str = "both",
    seed_size: int | None = None,
    round_size: int | None = None,
    max_labels: int | None = None,
    random_points: str | None = None,
) -> ExperimentConfig:
    config = ExperimentConfig()
    changes: dict[str, object] = {}
    if strategies:
        changes["strategies"] = tuple(s.strip() for s in strategies.split(",") if s.strip())
    if seeds:
        changes["seeds"] = _ints(seeds)
    changes["rules"] = {"both": (False, True), "on": (True,), "off": (False,)}[rules]
    for name, value in (
        ("seed_size", seed_size),
        ("round_size", round_size),
        ("max_labels", max_labels),
    ):
        if value is not None:
            changes[name] = value
    if random_points is not None:
        changes["random_extra_points"] = _ints(random_points)
    return replace(config, **changes)  # type: ignore[arg-type]  # validated in __post_init__


def run_active_learning(data_dir: Path, out: Path, config: ExperimentConfig) -> str:
    """Run the experiment, streaming points into ``out/curves.csv``; then the PNG and summary."""
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "curves.csv"
    with csv_path.open("w", encoding="utf-8") as handle:
        handle.write(",".join(CSV_FIELDS) + "\n")

    def record(point: Point) -> None:
        with csv_path.open("a", encoding="utf-8") as handle:
            handle.write(
                f"{point.strategy},{point.rules},{point.seed},{point.labels},"
                f"{point.accuracy:.4f},{point.seconds:.2f}\n"
            )
        logger.info(
            "%s rules=%s seed=%d labels=%d accuracy=%.4f (%.1fs)",
            point.strategy, point.rules, point.seed, point.labels, point.accuracy, point.seconds,
        )  # fmt: skip

    points = run_experiment(config, data_dir=data_dir, on_point=record)
    write_csv(points, csv_path)
    return report(out, config)


def report(out: Path, config: ExperimentConfig | None = None) -> str:
    """Re-draw ``curves.png`` and ``summary.md`` from ``out/curves.csv``."""
    points = read_csv(out / "curves.csv")
    seeds = sorted({p.seed for p in points})
    plot(
        points, out / "curves.png", title=f"Flipkart L3, pool-based active learning, seeds {seeds}"
    )
    text = summary(points)
    (out / "summary.md").write_text(text + "\n", encoding="utf-8")
    return text


__all__ = ["STRATEGIES", "experiment_config", "report", "run_active_learning"]
