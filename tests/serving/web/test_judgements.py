"""Validation of similarity judgements from the page, and their compaction key."""

from __future__ import annotations

from typing import Any

import pytest

from prodcat.schemas.serde import serde_for
from prodcat.serving.web.exceptions import InvalidInputError
from prodcat.serving.web.similarity import judgement_record
from prodcat.serving.web.view import TopicView, judgement_key

SHA = "ab" * 32


def payload(**changes: Any) -> dict[str, Any]:
    base = {
        "query_product_id": "q1",
        "query_image_sha256": None,
        "neighbour_product_id": "n1",
        "rank": 2,
        "score": 0.75,
        "relevant": True,
        "category_id": "c_0123456789ab",
        "model_version": 4,
    }
    return {**base, **changes}


def test_a_valid_judgement_encodes_and_has_a_stable_key() -> None:
    record = judgement_record("alice", payload(), 123)
    assert record["annotator"] == "alice" and record["judged_at"] == 123
    assert (
        serde_for("SimilarityJudgement").decode(serde_for("SimilarityJudgement").encode(record))
        == record
    )
    assert judgement_key(record) == "q1/c_0123456789ab/4/n1/alice"
    upload = judgement_record(
        "bob",
        payload(
            query_product_id=None, query_image_sha256=SHA, category_id=None, model_version=None
        ),
        1,
    )
    assert judgement_key(upload) == f"sha256:{SHA}/*/-/n1/bob"


@pytest.mark.parametrize(
    "changes",
    [
        {"query_product_id": None},
        {"query_image_sha256": SHA},
        {"query_product_id": None, "query_image_sha256": "xyz"},
        {"neighbour_product_id": ""},
        {"rank": 0},
        {"rank": True},
        {"rank": "1"},
        {"score": float("nan")},
        {"score": "high"},
        {"relevant": "yes"},
        {"category_id": "Apparel"},
        {"model_version": 1.5},
        {"neighbour_product_id": "x" * 600},
    ],
)
def test_bad_judgements_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        judgement_record("alice", payload(**changes), 1)


def test_the_view_keeps_the_latest_verdict_per_key() -> None:
    view = TopicView()
    record = judgement_record("alice", payload(), 1)
    key = judgement_key(record).encode()
    view.apply_judgement(key, record)
    view.apply_judgement(key, {**record, "relevant": False})
    view.apply_judgement(
        judgement_key({**record, "annotator": "bob"}).encode(), {**record, "annotator": "bob"}
    )
    (pair,) = view.judged_pairs()
    assert pair["relevance"] == 0.5 and pair["votes"] == 2 and view.judgement_count() == 2
    view.apply_judgement(key, None)
    assert view.judgement_count() == 1
