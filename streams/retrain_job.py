"""``prodcat retrain run``: the training job the retrain trigger launches (or a person runs).

Materialise the labelled snapshot from the compacted topics, screen its labels with the label
firewall (:mod:`prodcat.streams.firewall`: suspects held for review), train a candidate, evaluate it and
the serving version on the fixed holdout, gate, export (:func:`prodcat.training.retrain.retrain`), and
publish each step as a ``ModelEvent``. A gate rejection is a decision, not a failure: the job exits
0 either way and writes its result (``--result``) as JSON for the trigger. Everything a job leaves
lies under ``<work_dir>/jobs/v<version>/`` (snapshot, firewall, result) and ``<work_dir>/candidates/``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from prodcat.core.settings import Settings
from prodcat.streams.exceptions import RetrainJobError
from prodcat.streams.firewall import apply_firewall
from prodcat.streams.label_commands import materialise_snapshot
from prodcat.streams.model_events import EventPublisher
from prodcat.training.labels import (
    LabelledProduct,
    free_version,
    read_snapshot,
    write_snapshot,
)
from prodcat.training.retrain import RetrainResult, retrain
from prodcat.training.train_command import RunConfig

logger = logging.getLogger(__name__)


def job_dir(work_dir: Path, version: int) -> Path:
    return work_dir / "jobs" / f"v{version}"


@contextlib.contextmanager
def job_lock(folder: Path) -> Iterator[None]:
    """Hold ``<folder>/job.lock`` exclusively for the job's life; a second job for the same
    version fails at once instead of training and promoting it twice."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "job.lock").open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise RetrainJobError(
                f"another job for {folder.name} is running (it holds {folder / 'job.lock'})"
            ) from exc
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield  # the lock goes with the process, however it ends


def run_retrain_job(
    settings: Settings, *, version: int | None = None, result_path: Path | None = None
) -> RetrainResult:
    cfg, name = settings.retrain, settings.serving.classifier
    model_base = settings.serving.model_base
    run = RunConfig.load(cfg.config)  # a bad config fails before anything is read
    alternatives = [RunConfig.load(path) for path in cfg.alternatives]
    fixed = list(read_snapshot(cfg.holdout)) if cfg.holdout is not None else None
    version = version or free_version(model_base, name, cfg.work_dir)
    folder = job_dir(cfg.work_dir, version)
    with job_lock(folder):
        return _run_locked(settings, run, alternatives, fixed, version, folder, result_path)


def _run_locked(
    settings: Settings,
    run: RunConfig,
    alternatives: list[RunConfig],
    fixed: list[LabelledProduct] | None,
    version: int,
    folder: Path,
    result_path: Path | None,
) -> RetrainResult:
    cfg, name = settings.retrain, settings.serving.classifier
    model_base = settings.serving.model_base
    snapshot = materialise_snapshot(settings)
    # the label firewall: suspect labels are published and (mode hold) left out of the job
    items, _ = apply_firewall(
        settings, snapshot.items, snapshot.exclusive_labels, version=version, folder=folder
    )
    write_snapshot(items, folder / "snapshot.jsonl")  # what the job trains and evaluates on
    (folder / "snapshot_counts.json").write_text(
        json.dumps({**snapshot.counts.as_dict(), "label_offsets": snapshot.label_offsets}),
        encoding="utf-8",
    )
    result = retrain(
        items,
        vocabulary=snapshot.vocabulary,
        run=run,
        model_base=model_base,
        name=name,
        work_dir=cfg.work_dir,
        version=version,
        epsilon=cfg.epsilon,
        holdout_fraction=cfg.holdout_fraction,
        fixed_holdout=fixed,
        emit=EventPublisher(settings, name),
        alternatives=alternatives,
        precision_target=cfg.precision_target,
        warm_start=cfg.warm_start,
    )
    if result_path is not None:
        result_path.parent.mkdir(parents=True, exist_ok=True)
        result_path.write_text(json.dumps(result.to_dict()), encoding="utf-8")
    return result
