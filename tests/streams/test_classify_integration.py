"""The classify worker against a real Kafka broker and real SavedModels (in process, and over gRPC)."""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest

from prodcat.core.settings import ServingSettings, Settings
from prodcat.schemas.serde import serde_for
from prodcat.streams.readback import Record, read_topics
from prodcat.streams.worker_process import scrape_metric, wait_metric
from tests.conftest import TrainedClassifier, free_port
from tests.streams.kafka_io import produce, product_records, with_model_copy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FEED = {"feed": b"t"}


def _read(settings: Settings, expected: int, timeout_s: float = 120) -> list[Record]:
    return read_topics(
        settings.kafka,
        [settings.topics.predictions, settings.topics.deadletter],
        expected=expected,
        timeout_s=timeout_s,
    )


def _with_serving(settings: Settings, **serving: object) -> Settings:
    return settings.model_copy(update={"serving": ServingSettings(**serving)})  # type: ignore[arg-type]


def test_normalised_products_in_predictions_out_with_hot_swap(
    pipeline_settings: Settings,
    run_worker,
    data_dir: Path,
    tmp_path: Path,
    trained_classifier: TrainedClassifier,
) -> None:
    base = tmp_path / "models"
    shutil.copytree(trained_classifier.model_base, base)
    settings = _with_serving(
        pipeline_settings, model_base=base, poll_interval_s=0.5, batch_size=64, committee_size=2
    )
    products = product_records(data_dir, 0, 300)
    garbage = [(b"bad-1", b"not avro at all"), (b"bad-2", b"\xc3\x01" + b"\x00" * 12)]
    produce(settings, settings.topics.normalized, [*products, *garbage, (b"gone", None)], FEED)
    run_worker(settings, ["classify"], stage="classify")

    outputs = _read(settings, expected=len(products) + len(garbage) + 1)
    assert len(outputs) == len(products) + len(garbage) + 1
    predictions = [r for r in outputs if r.topic == settings.topics.predictions and r.value]
    dead = [r for r in outputs if r.topic == settings.topics.deadletter]
    tombstones = [r for r in outputs if r.topic == settings.topics.predictions and not r.value]
    assert [r.key for r in tombstones] == [b"gone"]
    assert sorted(r.key for r in dead) == [b"bad-1", b"bad-2"]
    letters = serde_for("DeadLetter")
    assert {letters.decode(r.value or b"")["error_kind"] for r in dead} == {"decode_error"}

    serde = serde_for("Prediction")
    decoded = [serde.decode(r.value or b"") for r in predictions]
    assert Counter(p["product_id"].encode() for p in decoded) == Counter(k for k, _ in products)
    assert all(r.key == p["product_id"].encode() for r, p in zip(predictions, decoded, strict=True))
    assert {(p["model_name"], p["model_version"]) for p in decoded} == {("classifier", 1)}
    first = decoded[0]
    assert len(first["exclusive_top_k"]) == 5 and first["exclusive_top_k"][0]["path"]
    assert 0.0 <= first["uncertainty"]["least_confidence"] <= 1.0
    assert first["uncertainty"]["vote_entropy"] is None  # one version: no committee yet

    # A new version appears in the model store: the running worker swaps to it.
    trained_classifier.export(base)
    time.sleep(2.0)
    more = product_records(data_dir, 300, 50)
    produce(settings, settings.topics.normalized, more, FEED)
    outputs = _read(settings, expected=len(outputs) + len(more))
    swapped = [
        serde.decode(r.value)
        for r in outputs
        if r.topic == settings.topics.predictions and r.value and r.key in dict(more)
    ]
    assert Counter(p["model_version"] for p in swapped) == {2: len(more)}
    # committee_size 2: version 1 stays loaded and scores with version 2 (the same weights here).
    assert all(p["uncertainty"]["vote_entropy"] == pytest.approx(0.0) for p in swapped)
    assert all(p["uncertainty"]["kl_consensus"] == pytest.approx(0.0, abs=1e-6) for p in swapped)


def test_a_serving_outage_backs_off_and_loses_nothing(
    pipeline_settings: Settings,
    run_worker,
    data_dir: Path,
    trained_classifier: TrainedClassifier,
) -> None:
    from prodcat.serving.grpc_server import serve

    port = free_port()
    settings = _with_serving(
        pipeline_settings,
        backend="tfserving",
        target=f"127.0.0.1:{port}",
        model_base=trained_classifier.model_base,
        deadline_s=2,
        retries=1,
    )
    products = product_records(data_dir, 1000, 120)
    produce(settings, settings.topics.normalized, products, FEED)
    run_worker(settings, ["classify"], stage="classify")
    time.sleep(5)  # the model server is down: nothing may come out, not even dead letters
    assert _read(settings, expected=None, timeout_s=3) == []

    server, servicer, _ = serve(trained_classifier.model_base, port=port)
    try:
        outputs = _read(settings, expected=len(products), timeout_s=120)
    finally:
        server.stop(grace=None)
        servicer.close()
    assert len(outputs) == len(products)
    assert all(r.topic == settings.topics.predictions for r in outputs)
    assert {r.key for r in outputs} == {k for k, _ in products}


def test_the_label_free_accuracy_estimate_moves_when_a_shifted_feed_arrives(
    pipeline_settings: Settings,
    run_worker,
    data_dir: Path,
    tmp_path: Path,
    trained_classifier: TrainedClassifier,
) -> None:
    """A calibrated version (its card's temperature) scores the products of a feed like the
    training data, then a feed whose titles carry none of the words the model knows: the
    estimate (expected correct / predictions, per feed) is lower for the shifted feed and the
    overall estimate falls when it arrives."""
    settings = with_model_copy(pipeline_settings, tmp_path, trained_classifier.model_base)
    card_path = settings.serving.model_base / "classifier" / "1" / "model_card.json"
    card = json.loads(card_path.read_text())
    card["calibration"] = {"temperature": 1.0}
    card_path.write_text(json.dumps(card))
    serde = serde_for("Product")
    like, shifted = [], []
    for key, value in product_records(data_dir, 2000, 150):
        product = serde.decode(value)
        like.append((key, serde.encode({**product, "feed": "like"})))
        words = [f"zq{abs(hash(w)) % 997}" for w in product["title"].split()]
        moved = {**product, "feed": "shifted", "title": " ".join(words), "brand": None,
                 "description": None, "category_path": []}  # fmt: skip
        shifted.append(
            (key + b"-s", serde.encode({**moved, "product_id": moved["product_id"] + "-s"}))
        )
    proc = run_worker(settings, ["classify"], stage="classify")
    host, port = settings.worker.metrics_host, settings.worker.metrics_port

    def estimate(feed: str) -> float:
        correct = scrape_metric(host, port, "prodcat_expected_correct_total",
                                model="classifier", feed=feed)  # fmt: skip
        count = scrape_metric(host, port, "prodcat_expected_predictions_total",
                              model="classifier", feed=feed)  # fmt: skip
        return correct / count

    produce(settings, settings.topics.normalized, like)
    wait_metric(proc, host, port, "prodcat_expected_predictions_total", len(like),
                timeout_s=120, model="classifier", feed="like")  # fmt: skip
    before = estimate("like")
    produce(settings, settings.topics.normalized, shifted)
    wait_metric(proc, host, port, "prodcat_expected_predictions_total", len(shifted),
                timeout_s=120, model="classifier", feed="shifted")  # fmt: skip
    after = estimate("shifted")
    assert after < before - 0.1, (before, after)
    overall = (before * len(like) + after * len(shifted)) / (len(like) + len(shifted))
    assert overall < before - 0.05
