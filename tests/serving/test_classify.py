"""Classification as pure functions: inputs, uncertainty scores, prediction records, the stage."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from prodcat.core.model_store import CardStore, ClassifierCard
from prodcat.core.settings import ServingSettings
from prodcat.schemas.serde import serde_for
from prodcat.serving.backends import ModelOutput
from prodcat.serving.classify import predictions, uncertainty
from prodcat.serving.exceptions import ModelInputError, ModelSignatureError
from prodcat.streams.classify_agent import ClassifyStage
from prodcat.streams.deadletter import DeadLetters
from prodcat.streams.normalize import normalize_event
from prodcat.training.inputs import model_inputs

CARD = ClassifierCard(
    name="clf",
    version=3,
    class_ids=("c_a", "c_b", "c_c"),
    class_paths=(("A",), ("A", "B"), ("C",)),
    rule_ids=("c_r1", "c_r2"),
    rule_paths=(("R1",), ("R1", "R2")),
)


def test_uncertainty_scores() -> None:
    scores = uncertainty(np.array([[1.0, 0.0, 0.0], [0.5, 0.3, 0.2], [1 / 3, 1 / 3, 1 / 3]]))
    np.testing.assert_allclose(scores[0], [0.0, 1.0, 0.0], atol=1e-9)
    entropy = -(0.5 * math.log(0.5) + 0.3 * math.log(0.3) + 0.2 * math.log(0.2))
    np.testing.assert_allclose(scores[1], [0.5, 0.2, entropy], atol=1e-9)
    np.testing.assert_allclose(scores[2], [2 / 3, 0.0, math.log(3)], atol=1e-9)
    with pytest.raises(ValueError):
        uncertainty(np.zeros((2, 0)))


def test_model_inputs_leave_the_category_out_as_in_training() -> None:
    inputs = model_inputs([{"title": "Shirt", "brand": None, "description": "cotton"}])
    assert list(inputs) == ["title", "brand", "category_text", "description"]
    assert inputs["brand"].tolist() == [""] and inputs["category_text"].tolist() == [""]


def _output(probs: list[list[float]], rules: list[list[float]]) -> ModelOutput:
    return ModelOutput(
        "clf", 3, {"exclusive_probs": np.array(probs), "rule_based_probs": np.array(rules)}
    )


def test_prediction_records_follow_the_card_and_the_schema() -> None:
    products = [{"product_id": "p1", "content_hash": "h1"}, {"product_id": "p2"}]
    output = _output([[0.1, 0.7, 0.2], [0.5, 0.1, 0.4]], [[0.9, 0.6], [0.2, 0.4]])
    records = predictions(products, output, CARD, top_k=2, rule_threshold=0.5, now_ms=123)
    first = records[0]
    assert first["model_name"] == "clf" and first["model_version"] == 3
    assert [s["category_id"] for s in first["exclusive_top_k"]] == ["c_b", "c_c"]
    assert first["exclusive_top_k"][0]["path"] == ["A", "B"]
    assert [s["category_id"] for s in first["rule_based_positives"]] == ["c_r1", "c_r2"]
    assert records[1]["rule_based_positives"] == []
    assert first["uncertainty"]["margin"] == pytest.approx(0.5)
    serde = serde_for("Prediction")
    assert serde.decode(serde.encode(first))["exclusive_top_k"][0]["path"] == ["A", "B"]


def test_predictions_carry_the_deepest_category_that_meets_its_threshold() -> None:
    from dataclasses import replace

    card = replace(CARD, decision_thresholds=(("c_a", 0.5), ("c_b", 0.8)), decision_target=0.95)
    products = [{"product_id": f"p{i}"} for i in range(3)]
    output = _output([[0.1, 0.7, 0.2], [0.5, 0.1, 0.4], [0.2, 0.1, 0.7]], [[0, 0]] * 3)
    records = predictions(products, output, card, top_k=2, rule_threshold=0.5, now_ms=1)
    first, second, third = (r["decision"] for r in records)
    assert first is not None and second is not None and third is not None
    # B's 0.7 is under its 0.8: back off to A, whose score is A's own 0.1 + B's 0.7.
    assert (first["kind"], first["category_id"], first["path"]) == ("backed_off", "c_a", ["A"])
    assert first["probability"] == pytest.approx(0.8) and first["target"] == 0.95
    assert (second["kind"], second["category_id"]) == ("leaf", "c_a")
    assert (third["kind"], third["category_id"], third["path"]) == ("abstained", None, [])
    serde = serde_for("Prediction")
    assert serde.decode(serde.encode(records[0]))["decision"] == first
    plain = predictions(products, output, CARD, top_k=2, rule_threshold=0.5, now_ms=1)
    assert all(r["decision"] is None for r in plain)  # a card without thresholds decides nothing
    loaded = ClassifierCard.from_dict(
        {
            "name": "clf",
            "version": 3,
            "classes": [],
            "decisions": {"target": 0.9, "thresholds": {"c_b": 0.8, "c_a": 0.5}},
        }
    )
    assert loaded.decision_thresholds == (("c_a", 0.5), ("c_b", 0.8))
    assert loaded.decision_target == 0.9


def test_outputs_that_do_not_fit_the_card_are_a_signature_error() -> None:
    with pytest.raises(ModelSignatureError):
        predictions(
            [{"product_id": "p"}], _output([[0.5, 0.5]], [[0.1, 0.1]]), CARD,
            top_k=2, rule_threshold=0.5, now_ms=0,
        )  # fmt: skip


class _FakeBackend:
    """Rejects any batch holding a title with BAD, like a model rejecting one input."""

    name = "clf"

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, inputs: dict[str, Any]) -> ModelOutput:
        self.calls += 1
        titles = inputs["title"].tolist()
        if any("BAD" in t for t in titles):
            raise ModelInputError("cannot score this input")
        n = len(titles)
        return _output([[0.6, 0.3, 0.1]] * n, [[0.7, 0.1]] * n)

    def close(self) -> None:
        return None


class _Cards(CardStore):
    def __init__(self) -> None:
        pass

    def classifier(self, name: str, version: int) -> ClassifierCard:
        return CARD


def _record(offset: int, value: bytes | None) -> SimpleNamespace:
    return SimpleNamespace(
        topic="products.normalized", partition=0, offset=offset, key=b"k%d" % offset,
        value=value, headers=[("feed", b"shop")],
    )  # fmt: skip


def test_the_stage_accounts_for_every_input() -> None:
    products = serde_for("Product")
    good = [
        products.encode(normalize_event(b'{"title": "%s %d"}' % (t, i), feed="shop", key=None,
                                        seen_at_ms=0))
        for i, t in enumerate([b"Shirt", b"BAD thing", b"Shoe", b"Watch", b"Bag"])
    ]  # fmt: skip
    records = [_record(i, v) for i, v in enumerate(good)]
    records += [_record(10, b"\x00not avro"), _record(11, None)]
    backend = _FakeBackend()
    stage = ClassifyStage(
        topic="products.predictions",
        products=products,
        predictions=serde_for("Prediction"),
        dead_letters=DeadLetters(
            "products.deadletter", serde_for("DeadLetter"), stage="classify", worker="w"
        ),
        backend=backend,
        cards=_Cards(),
        serving=ServingSettings(batch_size=4),
    )
    outputs = stage.process(records, now_ms=1)
    assert len(outputs) == len(records)
    kinds = [o.error_kind for o in outputs]
    assert kinds == [None, "model_input", None, None, None, "decode_error", None]
    assert outputs[-1].value is None and outputs[-1].topic == "products.predictions"  # tombstone
    prediction = serde_for("Prediction").decode(outputs[0].value)
    assert prediction["exclusive_top_k"][0]["category_id"] == "c_a"
    dead = serde_for("DeadLetter").decode(outputs[1].value)
    assert dead["stage"] == "classify" and dead["source_offset"] == 1
    assert dead["original_value"] == good[1]
    assert dict(outputs[0].headers)["prodcat-source"] == b"products.normalized/0/0"


class _CalibratedCards(_Cards):
    def classifier(self, name: str, version: int) -> ClassifierCard:
        from dataclasses import replace

        return replace(CARD, temperature=2.0)

    def card(self, name: str, version: int) -> dict[str, Any]:
        return {"exported_at": 0}


def _metered_stage(metrics: Any) -> ClassifyStage:
    """A stage over the fake backend and calibrated cards that counts into ``metrics``."""
    return ClassifyStage(
        topic="products.predictions",
        products=serde_for("Product"),
        predictions=serde_for("Prediction"),
        dead_letters=DeadLetters("dl", serde_for("DeadLetter"), stage="classify", worker="w"),
        backend=_FakeBackend(),
        cards=_CalibratedCards(),
        serving=ServingSettings(batch_size=8),
        metrics=metrics,
    )


def test_calibrated_confidences_are_counted_per_feed() -> None:
    from prometheus_client import CollectorRegistry

    from prodcat.core.metrics import ModelMetrics
    from prodcat.training.calibration import calibrated

    products = serde_for("Product")
    records = [
        _record(i, products.encode(normalize_event(b'{"title": "Shirt %d"}' % i, feed=feed,
                                                   key=None, seen_at_ms=0)))
        for i, feed in enumerate(["shop", "shop", "other"])
    ]  # fmt: skip
    registry = CollectorRegistry()
    stage = _metered_stage(ModelMetrics(registry))
    stage.process(records, now_ms=1)
    expected = float(calibrated(np.array([[0.6, 0.3, 0.1]]), 2.0).max())
    assert expected < 0.6  # a temperature above 1 softens the confidence
    sample = registry.get_sample_value
    assert sample("prodcat_expected_predictions_total", {"model": "clf", "feed": "shop"}) == 2
    assert sample("prodcat_expected_correct_total", {"model": "clf", "feed": "shop"}) == (
        pytest.approx(2 * expected)
    )
    assert sample("prodcat_expected_predictions_total", {"model": "clf", "feed": "other"}) == 1


def test_predictions_of_approved_feed_paths_are_checked_against_their_mapping() -> None:
    from prometheus_client import CollectorRegistry

    from prodcat.core.metrics import ModelMetrics
    from prodcat.training.mappings import Decision, feed_path_key

    products = serde_for("Product")
    raw = b'{"title": "Shirt %d", "category": "Tops > Shirts"}'
    records = [
        _record(i, products.encode(normalize_event(raw % i, feed=feed, key=None, seen_at_ms=0)))
        for i, feed in enumerate(["shop", "shop", "other", "unmapped"])
    ]
    registry = CollectorRegistry()
    stage = _metered_stage(ModelMetrics(registry))
    path = ("Tops", "Shirts")
    stage.mappings.update(
        {  # the model says c_a, path ("A",): shop's mapping agrees, other's does not
            feed_path_key("shop", path): Decision("shop", path, "approved", "c_a", ("A",)),
            feed_path_key("other", path): Decision("other", path, "approved", "c_c", ("C",)),
        }
    )
    stage.process(records, now_ms=1)
    sample = registry.get_sample_value
    assert sample("prodcat_mapping_checked_total", {"model": "clf", "feed": "shop"}) == 2
    assert sample("prodcat_mapping_agreed_total", {"model": "clf", "feed": "shop"}) == 2
    assert sample("prodcat_mapping_checked_total", {"model": "clf", "feed": "other"}) == 1
    assert sample("prodcat_mapping_agreed_total", {"model": "clf", "feed": "other"}) == 0
    assert sample("prodcat_mapping_checked_total", {"model": "clf", "feed": "unmapped"}) is None


def test_a_mapping_prior_conditions_the_prediction_on_the_mapped_subtree() -> None:
    from prometheus_client import CollectorRegistry

    from prodcat.core.metrics import ModelMetrics
    from prodcat.training.mappings import Decision, feed_path_key

    products = serde_for("Product")
    raw = b'{"title": "Shirt %d", "category": "Tops > Shirts"}'
    records = [
        _record(i, products.encode(normalize_event(raw % i, feed=feed, key=None, seen_at_ms=0)))
        for i, feed in enumerate(["shop", "other", "unmapped"])
    ]
    registry = CollectorRegistry()
    stage = _metered_stage(ModelMetrics(registry))
    stage.serving = stage.serving.model_copy(update={"mapping_prior": True})
    path = ("Tops", "Shirts")
    stage.mappings.update(
        {
            feed_path_key("shop", path): Decision("shop", path, "approved", "c_b", ("A", "B")),
            feed_path_key("other", path): Decision("other", path, "approved", "c_c", ("C",)),
        }
    )
    out = stage.process(records, now_ms=1)
    tops = [serde_for("Prediction").decode(o.value)["exclusive_top_k"] for o in out]
    # the model alone: A 0.6, A > B 0.3, C 0.1
    assert (tops[0][0]["category_id"], tops[0][0]["probability"]) == ("c_b", pytest.approx(1.0))
    assert [t["probability"] for t in tops[0][1:]] == [0.0, 0.0]
    assert (tops[1][0]["category_id"], tops[1][0]["probability"]) == ("c_c", pytest.approx(1.0))
    assert (tops[2][0]["category_id"], tops[2][0]["probability"]) == ("c_a", pytest.approx(0.6))
    sample = registry.get_sample_value  # agreement still reads the model's own top class (A)
    assert sample("prodcat_mapping_agreed_total", {"model": "clf", "feed": "shop"}) == 0
    assert sample("prodcat_mapping_agreed_total", {"model": "clf", "feed": "other"}) == 0


def test_a_node_deeper_than_the_classes_restricts_to_the_classes_on_its_path() -> None:
    from prodcat.serving.classify import restrict

    probs = np.array([[0.6, 0.3, 0.1], [0.6, 0.3, 0.1], [0.6, 0.3, 0.1]], dtype=np.float32)
    out = restrict(probs, CARD, [("A", "B", "Deep"), ("Z",), ()])
    np.testing.assert_allclose(out[0], [0.0, 1.0, 0.0])  # A > B is on the path of A > B > Deep
    np.testing.assert_allclose(out[1], probs[1])  # no class there: the model's own
    np.testing.assert_allclose(out[2], probs[2])
    assert out.dtype == np.float32


def test_a_missing_model_card_is_waited_for_not_dead_lettered(tmp_path: Any) -> None:
    """The served version's card unreadable (being written, deleted): a transient error the
    runtime retries with back-off; once the card is back the same batch is scored."""
    import json

    from prodcat.core.errors import TransientError

    products = serde_for("Product")
    records = [_record(0, products.encode(normalize_event(b'{"title": "Shirt"}', feed="shop",
                                                          key=None, seen_at_ms=0)))]  # fmt: skip
    stage = ClassifyStage(
        topic="products.predictions",
        products=products,
        predictions=serde_for("Prediction"),
        dead_letters=DeadLetters("dl", serde_for("DeadLetter"), stage="classify", worker="w"),
        backend=_FakeBackend(),
        cards=CardStore(tmp_path),
        serving=ServingSettings(batch_size=8),
    )
    with pytest.raises(TransientError, match="model card"):
        stage.process(records, now_ms=1)
    card = tmp_path / "clf" / "3"
    card.mkdir(parents=True)
    classes = zip(CARD.class_ids, CARD.class_paths, strict=True)
    nodes = zip(CARD.rule_ids, CARD.rule_paths, strict=True)
    written = {
        "classes": [{"id": i, "path": " > ".join(p)} for i, p in classes],
        "rule_based_nodes": [{"id": i, "path": " > ".join(p)} for i, p in nodes],
    }
    (card / "model_card.json").write_text(json.dumps(written))
    (out,) = stage.process(records, now_ms=1)
    assert out.topic == "products.predictions"
