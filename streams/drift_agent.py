"""The drift agent: ``products.predictions`` → PSI against the serving model's training reference.

Thin like every agent: decode predictions (or dead-letter them with the reason), take each one's
top-1 category and confidence into the tumbling window of its model (``prodcat.training.drift``), and when
a window closes compare it with the reference of the model version that made those predictions
(``<model_base>/<name>/<version>/drift_reference.json``, written at export). The result is a
metric, not a record: ``prodcat_drift_psi{model,signal}``. A version without a reference is
counted (``prodcat_drift_reference_missing_total``) and left out; predictions of a version older
than the one a model's window gathers (stragglers during a hot swap) are skipped as stale.

It consumes in its own consumer group and commits per micro-batch (a task of the stage runtime);
windows that have lasted ``window_s`` are also closed on the runtime's tick, so a quiet topic does
not leave a window open. The open windows live in memory only, so a restart starts them afresh
(nothing is lost but a partial window's PSI).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import faust

from prodcat.core.metrics import DriftMetrics, StageMetrics
from prodcat.core.settings import DriftSettings, Settings
from prodcat.schemas.records import Prediction
from prodcat.schemas.serde import AvroSerde, serde_for
from prodcat.streams.deadletter import DeadLetters
from prodcat.streams.decoding import decode_records
from prodcat.streams.runtime import StageHandler, register_stage
from prodcat.streams.stage import Input, Outgoing, Outputs
from prodcat.training.drift import DriftReference, DriftReferenceError, DriftWindow, WindowSet, top1

logger = logging.getLogger(__name__)

STAGE = "drift"
#: A model name that is a plain directory name of the model store (no paths, no dot files).
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
SIGNALS = ("category", "confidence")


class ReferenceStore:
    """Drift references by (model, version) from the model store, cached. A version without one
    is looked up again after ``retry_s`` (a store mounted late, a reference copied in by hand)."""

    def __init__(
        self, model_base: Path, retry_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.model_base = Path(model_base)
        self.retry_s = retry_s
        self.clock = clock
        self._found: dict[tuple[str, int], DriftReference] = {}
        self._missing: dict[tuple[str, int], float] = {}
        self._known: dict[str, bool] = {}
        self._lock = threading.Lock()

    def known_model(self, name: str) -> bool:
        """Whether the store has the model (cached: asked per prediction without a reference)."""
        known = self._known.get(name)
        if known is None:
            known = self._known[name] = (self.model_base / name).is_dir()
        return known

    def get(self, name: str, version: int) -> DriftReference | None:
        key = (name, version)
        with self._lock:
            found = self._found.get(key)
            if found is not None:
                return found
            missed = self._missing.get(key)
            if missed is not None and self.clock() - missed < self.retry_s:
                return None
        try:
            reference = DriftReference.read(self.model_base / name / str(version))
        except (OSError, DriftReferenceError) as exc:
            logger.warning("%s: no drift reference for %s v%d: %s", STAGE, name, version, exc)
            with self._lock:
                self._missing[key] = self.clock()
            return None
        with self._lock:
            self._found[key] = reference
            self._missing.pop(key, None)
        return reference


class DriftStage:
    """Predictions in, PSI gauges out; no Kafka here (tests drive it directly)."""

    def __init__(
        self,
        *,
        predictions: AvroSerde,
        dead_letters: DeadLetters,
        references: ReferenceStore,
        settings: DriftSettings,
        metrics: DriftMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.predictions = predictions
        self.dead_letters = dead_letters
        self.references = references
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.windows = WindowSet(
            settings.window_predictions, settings.window_s, settings.min_window
        )
        self._scored: dict[str, int] = {}  # model → version its PSI series shows

    def process(self, records: Sequence[Any], now_ms: int) -> list[Outgoing]:
        """One output per record: a dead letter, a skip (deleted, stale_version, no_reference),
        or taken into a window (counted as out). Closed windows are scored on the way."""
        decoded, dead = decode_records(
            records, self.predictions, self.dead_letters, now_ms, Prediction
        )
        outputs: list[Outgoing | None] = [dead.get(i) for i in range(len(records))]
        now = self.clock()
        for item in decoded:
            prediction = item.value
            if prediction is None:
                outputs[item.index] = item.output(None, skipped="deleted")
                continue
            top = top1(prediction)
            model = str(prediction.get("model_name") or "")
            if top is None or not _MODEL_NAME.match(model):
                problem = (
                    "no top-1 exclusive category with a probability in [0, 1]"
                    if top is None
                    else f"model_name {model[:100]!r} is not a model store name"
                )
                outputs[item.index] = item.dead(
                    self.dead_letters, "invalid_prediction", problem, now_ms
                )
                continue
            version = int(prediction["model_version"])
            if self.windows.is_stale(model, version, now):
                outputs[item.index] = item.output(None, skipped="stale_version")
                continue
            for window in self.windows.advance(model, version, now):
                self._score(window)
            reference = self.references.get(model, version)
            if reference is None:
                self._no_reference(model, version)
                outputs[item.index] = item.output(None, skipped="no_reference")
                continue
            for window in self.windows.add(model, version, top[0], top[1], now):
                self._score(window)
            outputs[item.index] = item.output(None)
        for window in self.windows.expire(now):
            self._score(window)
        return [out for out in outputs if out is not None]

    def expire(self) -> None:
        """Score the windows that have lasted their time, with or without new predictions."""
        for window in self.windows.expire(self.clock()):
            self._score(window)

    def _no_reference(self, model: str, version: int) -> None:
        """Count it; a PSI series of an older version of the model ends (it no longer serves)."""
        label = model if self.references.known_model(model) else "unknown"
        self.metrics.reference_missing.labels(label).inc()
        scored = self._scored.get(model)
        if scored is not None and scored < version:
            for signal in SIGNALS:
                self.metrics.psi.remove(model, signal)
                self.metrics.psi_expected.remove(model, signal)
            del self._scored[model]

    def _score(self, window: DriftWindow) -> None:
        reference = self.references.get(window.model, window.version)
        if reference is None:  # it was there when the window took its predictions
            return
        score = window.score(reference, self.settings.bins, self.settings.epsilon)
        m = self.metrics
        m.psi.labels(window.model, "category").set(score.category_psi)
        m.psi.labels(window.model, "confidence").set(score.confidence_psi)
        m.psi_expected.labels(window.model, "category").set(score.category_expected)
        m.psi_expected.labels(window.model, "confidence").set(score.confidence_expected)
        m.window_predictions.labels(window.model).set(score.predictions)
        m.window_version.labels(window.model).set(score.version)
        m.windows.labels(window.model).inc()
        self._scored[window.model] = window.version
        logger.info(
            "%s: %s v%d, %d predictions: PSI category %.4f, confidence %.4f",
            STAGE,
            window.model,
            window.version,
            score.predictions,
            score.category_psi,
            score.confidence_psi,
        )


def build_stage(settings: Settings, metrics: DriftMetrics) -> DriftStage:
    registry, topics = settings.serde.registry_url, settings.topics
    return DriftStage(
        predictions=serde_for("Prediction", registry, topic=topics.predictions),
        dead_letters=DeadLetters.for_stage(settings, STAGE),
        references=ReferenceStore(settings.serving.model_base),
        settings=settings.drift,
        metrics=metrics,
    )


class DriftAgent(StageHandler):
    """``DriftStage`` for the stage runtime: windows close on predictions and on ticks."""

    def __init__(self, stage: DriftStage, topic: str) -> None:
        super().__init__(STAGE, topic, stage.dead_letters)
        self.stage = stage

    def process(self, batch: Sequence[Input]) -> Outputs:
        return Outputs.of(self.stage.process(batch, time.time_ns() // 1_000_000))

    def on_tick(self, now: float) -> None:
        self.stage.expire()


def register_drift(app: faust.App, settings: Settings, metrics: StageMetrics) -> Any:
    """Declare the drift agent on ``app`` (a task of the stage runtime)."""
    stage = build_stage(settings, DriftMetrics(metrics.registry))
    return register_stage(app, settings, metrics, DriftAgent(stage, settings.topics.predictions))
