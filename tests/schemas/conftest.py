"""Fixtures for the schema tests: sample records of every schema and a small real Schema Registry.

The registry is a stdlib HTTP server on 127.0.0.1 (ephemeral port) that implements the part of
the Confluent REST API that confluent-kafka's ``SchemaRegistryClient`` uses for Avro
serializers and deserializers (checked against confluent-kafka 2.16.0):

* ``POST /subjects/{subject}/versions?normalize=...``: register, answers ``{"id": N}``
* ``POST /subjects/{subject}?normalize=...&deleted=...``: look a schema up in a subject
* ``GET /subjects``, ``GET /subjects/{subject}/versions``,
  ``GET /subjects/{subject}/versions/{n|latest}``
* ``GET /schemas/ids/{id}[?subject=...]``: answers ``{"schema": "..."}``

Anything else (``/associations/...``, ``/config``, ...) is a 404 with a Confluent error body.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from io import BytesIO
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer

from prodcat.schemas import SINGLE_OBJECT_MARKER, SchemaStore, fingerprint
from tests.fake_registry import FakeSchemaRegistry, serve_registry

SEEN_AT = 1_700_000_000_123  # 2023-11-14T22:13:20.123Z, in ms

# Realistic records per schema: a full one (unicode everywhere) and a sparse one (nulls, empty
# arrays and maps). Every field is present, so a round trip must give back an equal dict.
RECORDS: dict[str, list[dict[str, Any]]] = {
    "Product": [
        {
            "product_id": "p-3f9a1c",
            "feed": "awin-uk",
            "source_id": "SKU-123456",
            "title": "Nike Air Zoom Pegasus 40 - Laufschuh für Herren, 男子跑鞋 🏃",
            "brand": "Nike",
            "category_path": ["Schuhe", "Laufen", "Herren"],
            "description": "Reaktive Dämpfung. Ça marche très bien. Ωμέγα.",
            "gender": "men",
            "sizes": ["40", "41.5", "42", "UK 9"],
            "price": {"value": 119.99, "currency": "EUR"},
            "list_price": {"value": 129.0, "currency": None},
            "image_urls": ["https://img.example.com/a.jpg", "https://img.example.com/ü.jpg"],
            "product_url": "https://shop.example.com/p/123?ref=ä",
            "retailer": "Sportscheck",
            "attributes": {"colour": "schwarz/weiß", "material": "mesh", "": ""},
            "profile_version": 3,
            "content_hash": "9f86d081884c7d659a2feaa0c55ad015",
            "seen_at": SEEN_AT,
        },
        {
            "product_id": "p-0",
            "feed": "",
            "source_id": None,
            "title": "x",
            "brand": None,
            "category_path": [],
            "description": None,
            "gender": None,
            "sizes": [],
            "price": None,
            "list_price": None,
            "image_urls": [],
            "product_url": None,
            "retailer": None,
            "attributes": {},
            "profile_version": None,
            "content_hash": "0",
            "seen_at": 0,
        },
    ],
    "DeadLetter": [
        {
            "stage": "normalize",
            "error_kind": "not_json",
            "message": "Expecting value: line 1 column 1 (char 0) — «garbage»",
            "original_key": b"\x00\xffkey",
            "original_value": b"\xc3\x28 not utf-8",
            "original_headers": {"feed": b"awin-uk", "trace-id": b"\x01\x02", "leer": b""},
            "feed": "awin-uk",
            "source_topic": "products.raw",
            "source_partition": 3,
            "source_offset": 9_007_199_254_740_993,
            "worker": "host-1:prodcat",
            "failed_at": SEEN_AT,
        },
        {
            "stage": "classify",
            "error_kind": "too_large",
            "message": "",
            "original_key": None,
            "original_value": None,
            "original_headers": {},
            "feed": None,
            "source_topic": "products.normalized",
            "source_partition": 0,
            "source_offset": 0,
            "worker": None,
            "failed_at": 1,
        },
    ],
    "Prediction": [
        {
            "product_id": "p-3f9a1c",
            "content_hash": "9f86d081884c7d659a2feaa0c55ad015",
            "model_name": "exclusive-v2",
            "model_version": 17,
            "exclusive_top_k": [
                {"category_id": "c-12", "path": ["Schuhe", "Laufschuhe"], "probability": 0.8125},
                {"category_id": "c-13", "path": [], "probability": 0.125},
            ],
            "rule_based_positives": [
                {"category_id": "c-1", "path": ["Schuhe"], "probability": 0.99},
            ],
            "uncertainty": {
                "least_confidence": 0.1875,
                "margin": 0.6875,
                "entropy": 0.5623,
                "vote_entropy": 0.6365,
                "kl_consensus": 0.0421,
            },
            "predicted_at": SEEN_AT,
            "decision": {
                "kind": "backed_off",
                "category_id": "c-1",
                "path": ["Schuhe"],
                "probability": 0.9375,
                "target": 0.95,
            },
        },
        {
            "product_id": "p-0",
            "content_hash": None,
            "model_name": "m",
            "model_version": 0,
            "exclusive_top_k": [],
            "rule_based_positives": [],
            "uncertainty": {
                "least_confidence": 0.0,
                "margin": 1.0,
                "entropy": 0.0,
                "vote_entropy": None,
                "kl_consensus": None,
            },
            "predicted_at": 0,
            "decision": None,
        },
    ],
    "FeedProfile": [
        {
            "feed": "händler-de",
            "shape": "a1b2c3",
            "version": 2,
            "sample_size": 500,
            "fingerprint": "f00d",
            "keys": ["Ürün Adı", "g:title", "basic"],  # noqa: RUF001  # a real Turkish header
            "segment": {"path": "merchant.name", "values": ["casa verde", "nordhaus"]},
            "fields": [
                {
                    "role": "title",
                    "sources": ["basic.productShortName"],
                    "kind": "text",
                    "delimiter": None,
                    "split": None,
                    "scale": 1.0,
                    "currency": None,
                    "confidence": 0.97,
                    "evidence": "unique 99%, 3-9 words, letters",
                    "examples": ["Gaveeske 4 ølflasker"],
                },
                {
                    "role": "category",
                    "sources": ["cat1", "cat2"],
                    "kind": "columns",
                    "delimiter": " > ",
                    "split": "tight",
                    "scale": 0.01,
                    "currency": "EUR",
                    "confidence": 0.9,
                    "evidence": "cat2 nests in cat1 (99.8%)",
                    "examples": [],
                },
            ],
            "overrides": [
                {
                    "role": "brand",
                    "sources": ["Marke"],
                    "kind": "text",
                    "delimiter": None,
                    "split": None,
                    "scale": 1.0,
                    "currency": None,
                    "confidence": 1.0,
                    "evidence": "operator override",
                    "examples": [],
                }
            ],
            "created_at": SEEN_AT,
            "reason": "re-profiled: key Marke appeared",
        },
        {
            "feed": "",
            "shape": "",
            "version": 1,
            "sample_size": 0,
            "fingerprint": "",
            "keys": [],
            "segment": None,
            "fields": [],
            "overrides": [],
            "created_at": 0,
            "reason": "",
        },
    ],
    "Label": [
        {
            "product_id": "p-3f9a1c",
            "objective": "exclusive",
            "category_ids": ["c-12"],
            "source": "human",
            "annotator": "zoë@example.com",
            "strategy": "margin",
            "score": 0.03125,
            "time_taken_ms": 4_200,
            "model_version": 17,
            "labelled_at": SEEN_AT,
            "history": [
                {
                    "category_ids": ["c-11"],
                    "labelled_at": SEEN_AT - 5,
                    "change": "3b2f0c1d9e8a",
                    "changed_at": SEEN_AT,
                },
            ],
        },
        {
            "product_id": "p-0",
            "objective": "rule_based",
            "category_ids": [],
            "source": "unknown",
            "annotator": None,
            "strategy": None,
            "score": None,
            "time_taken_ms": None,
            "model_version": None,
            "labelled_at": 0,
            "history": [],
        },
    ],
    "AnnotationRequest": [
        {
            "product_id": "p-3f9a1c",
            "strategy": "qbc_vote_entropy",
            "score": 0.6931471805599453,
            "suggestions": [
                {"category_id": "c-12", "path": ["Schuhe", "Laufschuhe"], "probability": 0.5},
                {"category_id": "c-7", "path": [], "probability": 0.25},
            ],
            "model_name": "exclusive-v2",
            "model_version": 17,
            "requested_at": SEEN_AT,
            "decision": "backed_off",
            "partial_path": ["Schuhe"],
        },
        {
            "product_id": "p-0",
            "strategy": "random",
            "score": 0.0,
            "suggestions": [],
            "model_name": "",
            "model_version": -1,
            "requested_at": -1,
            "decision": None,
            "partial_path": [],
        },
    ],
    "ModelEvent": [
        {
            "model_name": "exclusive-v2",
            "model_version": 17,
            "event": "promoted",
            "metrics": {"macro_f1": 0.8123, "top1_accuracy": 0.91, "Δ_f1": 0.0123},
            "baseline_version": 16,
            "reason": "macro F1 +1.2 pts über baseline",
            "artifact_uri": "s3://models/exclusive-v2/17/",
            "occurred_at": SEEN_AT,
        },
        {
            "model_name": "m",
            "model_version": 1,
            "event": "trained",
            "metrics": {},
            "baseline_version": None,
            "reason": None,
            "artifact_uri": None,
            "occurred_at": 0,
        },
    ],
    "SimilarityJudgement": [
        {
            "query_product_id": "p-3f9a1c",
            "query_image_sha256": None,
            "neighbour_product_id": "p-7ü",
            "rank": 3,
            "score": 0.8125,
            "relevant": True,
            "category_id": "c_0123456789ab",
            "model_version": 2,
            "annotator": "zoë@example.com",
            "judged_at": SEEN_AT,
        },
        {
            "query_product_id": None,
            "query_image_sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "neighbour_product_id": "p-0",
            "rank": 1,
            "score": -0.25,
            "relevant": False,
            "category_id": None,
            "model_version": None,
            "annotator": "a",
            "judged_at": 0,
        },
    ],
    "Taxonomy": [
        {
            "version": "0123456789abcdef",
            "sequence": 2,
            "source": "paths:kategorien.csv",
            "nodes": [
                {
                    "id": "c_0123456789ab",
                    "name": "İçecekler",
                    "path": ["İçecekler"],
                    "parent": None,
                    "count": 12,
                    "exclusive": False,
                },
                {
                    "id": "c_ba9876543210",
                    "name": "Getränke & Genussmittel",
                    "path": ["İçecekler", "Getränke & Genussmittel"],
                    "parent": "c_0123456789ab",
                    "count": 7,
                    "exclusive": True,
                },
            ],
            "exclusive_max_depth": 2,
            "exclusive_min_count": 3,
            "previous": "fedcba9876543210",
            "reason": "import kategorien.csv — ü",
            "created_at": SEEN_AT,
        },
        {
            "version": "0",
            "sequence": 1,
            "source": "",
            "nodes": [],
            "exclusive_max_depth": 1,
            "exclusive_min_count": 1,
            "previous": None,
            "reason": "",
            "created_at": 0,
        },
    ],
}


@pytest.fixture(params=sorted(RECORDS))
def record_name(request: pytest.FixtureRequest) -> str:
    """Each shipped record name in turn."""
    name: str = request.param
    return name


@pytest.fixture
def store() -> SchemaStore:
    """A fresh store with the shipped schemas, so tests never touch the process-wide one."""
    return SchemaStore()


def encode_single_object(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    """Single-object encoding with an arbitrary writer schema, done directly with fastavro."""
    buffer = BytesIO()
    buffer.write(SINGLE_OBJECT_MARKER + fingerprint(schema))
    schemaless_writer(buffer, parse_schema(json.loads(json.dumps(schema))), record)
    return buffer.getvalue()


@pytest.fixture
def single_object() -> Any:
    """``single_object(schema_dict, record) -> bytes`` for writers other than the shipped ones."""
    return encode_single_object


# --- the fake Schema Registry -------------------------------------------------------------------


@pytest.fixture
def schema_registry() -> Iterator[FakeSchemaRegistry]:
    """A fresh fake Schema Registry per test, served on an ephemeral local port."""
    with serve_registry() as registry:
        yield registry
