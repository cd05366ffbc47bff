"""The drift worker against a real Kafka broker: predictions in, PSI on /metrics, bad ones dead."""

from __future__ import annotations

from pathlib import Path

import pytest

from prodcat.core.settings import DriftSettings, Settings
from prodcat.schemas.serde import serde_for
from prodcat.streams.readback import read_topics
from prodcat.streams.worker_process import scrape_metric, wait_metric
from tests.streams.kafka_io import produce
from tests.streams.test_drift_stage import matching, reference, shifted, write_reference

pytestmark = [pytest.mark.integration]

WINDOW = 300


def test_psi_is_low_for_predictions_like_the_reference_and_high_for_shifted_ones(
    pipeline_settings: Settings, run_worker, tmp_path: Path
) -> None:
    model_base = tmp_path / "models"
    write_reference(model_base, "clf", 1, reference())
    settings = pipeline_settings.model_copy(
        update={
            "serving": pipeline_settings.serving.model_copy(update={"model_base": model_base}),
            "drift": DriftSettings(window_predictions=WINDOW, min_window=100, window_s=3600),
        }
    )
    proc = run_worker(settings, ["drift"], stage="drift")
    host, port = settings.worker.metrics_host, settings.worker.metrics_port
    serde = serde_for("Prediction")
    topic = settings.topics.predictions

    def publish(predictions: list[dict[str, object]]) -> None:
        produce(
            settings, topic, [(str(p["product_id"]).encode(), serde.encode(p)) for p in predictions]
        )

    publish(matching(WINDOW, seed=11))
    wait_metric(proc, host, port, "prodcat_drift_windows_total", 1, timeout_s=60, model="clf")
    low = scrape_metric(host, port, "prodcat_drift_psi", model="clf", signal="category")
    low_confidence = scrape_metric(
        host, port, "prodcat_drift_psi", model="clf", signal="confidence"
    )
    assert 0 <= low < 0.05 and 0 <= low_confidence < 0.1, (low, low_confidence)
    assert scrape_metric(host, port, "prodcat_drift_window_predictions", model="clf") == WINDOW

    bad = [
        (b"garbage", b"\x00not a prediction"),
        (b"empty", serde.encode({**matching(1, seed=0)[0], "exclusive_top_k": []})),
    ]
    produce(settings, topic, bad)
    publish(shifted(WINDOW, seed=12))
    wait_metric(proc, host, port, "prodcat_drift_windows_total", 2, timeout_s=60, model="clf")
    high = scrape_metric(host, port, "prodcat_drift_psi", model="clf", signal="category")
    high_confidence = scrape_metric(
        host, port, "prodcat_drift_psi", model="clf", signal="confidence"
    )
    assert high > 0.25 and high_confidence > 0.25, (high, high_confidence)

    letters = read_topics(settings.kafka, [settings.topics.deadletter], expected=2, timeout_s=30)
    dead = serde_for("DeadLetter")
    reasons = {r.key: dead.decode(r.value or b"")["error_kind"] for r in letters}
    assert reasons == {b"garbage": "decode_error", b"empty": "invalid_prediction"}
    assert scrape_metric(host, port, "prodcat_events_in_total", stage="drift") == 2 * WINDOW + 2
    assert scrape_metric(host, port, "prodcat_dead_letters_total", stage="drift") == 2
