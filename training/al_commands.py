"""``prodcat experiment active-learning``: run the simulation, write curves (CSV, PNG) and a summary."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from prodcat.training.active_learning import STRATEGIES, ExperimentConfig, Point, run_experiment
from prodcat.training.al_report import append_csv, plot, read_csv, summary, write_csv
from prodcat.training.data_files import LabelledData

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
    level: int | None = None,
    learner: str | None = None,
    class_names: float | None = None,
    encoder_weight: float | None = None,
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
        ("level", level),
        ("learner_kind", learner),
        ("class_names", class_names),
        ("encoder_weight", encoder_weight),
    ):
        if value is not None:
            changes[name] = value
    if random_points is not None:
        changes["random_extra_points"] = _ints(random_points)
    return replace(config, **changes)  # type: ignore[arg-type]  # validated in __post_init__


def run_active_learning(
    data_dir: Path,
    out: Path,
    config: ExperimentConfig,
    *,
    resume: bool = False,
    data: LabelledData | None = None,
    encoder: Any = None,
) -> str:
    """Run the experiment, streaming points into ``out/curves.csv``; then the PNG and summary.

    ``out/curves.csv`` collects experiments: the curves of other learners and datasets in it are
    kept, this run's own (same learner and dataset) are replaced; ``resume`` keeps those of them
    that are complete (an interrupted run). With ``data`` (``--data``) the pool is that file's
    protocol split and, as there are no rules for it, only the curves without the rule-based
    objective run."""
    if data is not None:
        config = replace(config, rules=(False,), dataset=Path(data.source).stem)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "curves.csv"
    existing = read_csv(csv_path) if csv_path.is_file() else []
    this = (config.dataset, config.learner_name)
    others = [p for p in existing if (p.dataset, p.learner) != this]
    mine = [p for p in existing if (p.dataset, p.learner) == this]
    done = _complete_curves(mine, config) if resume else []
    write_csv(others + done, csv_path)

    def record(point: Point) -> None:
        append_csv(point, csv_path)
        logger.info(
            "%s rules=%s seed=%d labels=%d accuracy=%.4f (%.1fs)",
            point.strategy, point.rules, point.seed, point.labels, point.accuracy, point.seconds,
        )  # fmt: skip

    if data is None:
        points = run_experiment(
            config, data_dir=data_dir, on_point=record, done=done, encoder=encoder
        )
    else:
        points = run_experiment(
            config,
            examples=data.examples,
            on_point=record,
            done=done,
            rules_file=None,
            encoder=encoder,
        )
    write_csv(others + points, csv_path)
    title = f"{Path(data.source).name if data else config.dataset} L{config.level}"
    return report(out, config, title=title)


def _complete_curves(points: list[Point], config: ExperimentConfig) -> list[Point]:
    """The points of curves that reached ``max_labels`` (random: its last extra point)."""
    last: dict[tuple[str, bool, int], int] = {}
    for p in points:
        key = (p.strategy, p.rules, p.seed)
        last[key] = max(last.get(key, 0), p.labels)
    extra = [s for s in config.random_extra_points if s > config.max_labels]
    goal = {True: max(extra, default=config.max_labels), False: config.max_labels}
    complete = {key for key, top in last.items() if top >= goal[key[0] == "random"]}
    return [p for p in points if (p.strategy, p.rules, p.seed) in complete]


def report(out: Path, config: ExperimentConfig | None = None, *, title: str = "") -> str:
    """Re-draw ``curves.png`` and ``summary.md`` from ``out/curves.csv``."""
    points = read_csv(out / "curves.csv")
    seeds = sorted({p.seed for p in points})
    if not title:
        datasets = sorted({p.dataset for p in points})
        title = ", ".join(datasets) + (f" L{config.level}" if config else "")
    plot(points, out / "curves.png", title=f"{title}, pool-based active learning, seeds {seeds}")
    text = summary(points)
    (out / "summary.md").write_text(text + "\n", encoding="utf-8")
    return text


__all__ = ["STRATEGIES", "experiment_config", "report", "run_active_learning"]
