"""Schema evolution: messages written with other versions of a schema, read with the shipped one."""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Callable
from typing import Any

import pytest

from prodcat.schemas import (
    AvroSerde,
    DecodeError,
    SchemaError,
    SchemaStore,
    UnknownSchemaError,
    default_store,
    fingerprint,
    load_schema_dict,
    serde_for,
)
from tests.schemas.conftest import RECORDS

Encoder = Callable[[dict[str, Any], dict[str, Any]], bytes]


def _without(schema: dict[str, Any], *names: str) -> dict[str, Any]:
    """A copy of ``schema`` without the named fields: an older version of it."""
    old = copy.deepcopy(schema)
    old["fields"] = [f for f in old["fields"] if f["name"] not in names]
    return old


def _field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(f for f in schema["fields"] if f["name"] == name)
    return found


def _defaulted(schema: dict[str, Any]) -> list[str]:
    return [f["name"] for f in schema["fields"] if "default" in f]


def test_old_product_without_defaulted_fields_gets_defaults(
    store: SchemaStore, single_object: Encoder
) -> None:
    old = _without(load_schema_dict("Product"), "attributes", "list_price", "sizes")
    record = {
        k: v for k, v in RECORDS["Product"][0].items() if k in {f["name"] for f in old["fields"]}
    }
    data = single_object(old, record)
    assert data[2:10] == store.register(old) != fingerprint(load_schema_dict("Product"))

    decoded = AvroSerde("Product", store=store).decode(data)

    assert decoded == {**record, "attributes": {}, "list_price": None, "sizes": []}


def test_every_schema_reads_its_version_without_defaulted_fields(
    record_name: str, store: SchemaStore, single_object: Encoder
) -> None:
    current = load_schema_dict(record_name)
    dropped = _defaulted(current)
    assert dropped, f"{record_name} has no defaulted field to evolve"
    old = _without(current, *dropped)
    record = {k: v for k, v in RECORDS[record_name][0].items() if k not in dropped}
    store.register(old)

    decoded = AvroSerde(record_name, store=store).decode(single_object(old, record))

    defaults = {name: _field(current, name)["default"] for name in dropped}
    assert decoded == {**record, **defaults}


def test_every_schema_ignores_fields_added_by_a_newer_writer(
    record_name: str, store: SchemaStore, single_object: Encoder
) -> None:
    newer = load_schema_dict(record_name)
    newer["fields"].append({"name": "added_later", "type": ["null", "string"], "default": None})
    store.register(newer)
    record = RECORDS[record_name][0]

    decoded = AvroSerde(record_name, store=store).decode(
        single_object(newer, {**record, "added_later": "ignored"})
    )

    assert decoded == record


def test_old_version_must_be_registered_first(store: SchemaStore, single_object: Encoder) -> None:
    old = _without(load_schema_dict("Product"), "attributes")
    data = single_object(old, RECORDS["Product"][1])
    serde = AvroSerde("Product", store=store)
    with pytest.raises(UnknownSchemaError, match=fingerprint(old).hex()):
        serde.decode(data)
    assert store.register(old) == fingerprint(old)
    assert serde.decode(data)["attributes"] == {}


def test_register_is_idempotent_and_accepts_json_text(store: SchemaStore) -> None:
    old = _without(load_schema_dict("Label"), "model_version")
    size = len(store)
    assert store.register(old) == store.register(json.dumps(old)) == fingerprint(old)
    assert len(store) == size + 1
    assert store.register(load_schema_dict("Label")) in store
    assert len(store) == size + 1


def test_registering_an_invalid_schema_raises_schema_error(store: SchemaStore) -> None:
    for bad in ({"type": "record", "name": "X", "fields": [{"name": "a", "type": "nope"}]}, "{"):
        with pytest.raises(SchemaError) as info:
            store.register(bad)
        assert info.value.__cause__ is not None


def test_missing_field_without_default_cannot_be_resolved(
    store: SchemaStore, single_object: Encoder
) -> None:
    old = _without(load_schema_dict("Product"), "content_hash")
    store.register(old)
    record = {k: v for k, v in RECORDS["Product"][0].items() if k != "content_hash"}
    with pytest.raises(DecodeError, match="SchemaResolutionError"):
        AvroSerde("Product", store=store).decode(single_object(old, record))


def _with_symbol(record_name: str, field: str, symbol: str) -> dict[str, Any]:
    schema = load_schema_dict(record_name)
    _field(schema, field)["type"]["symbols"].append(symbol)
    return schema


@pytest.mark.parametrize(
    ("record_name", "field", "symbol"),
    [("Label", "source", "crowd"), ("ModelEvent", "event", "archived")],
)
def test_unknown_enum_symbol_reads_as_enum_default(
    record_name: str, field: str, symbol: str, store: SchemaStore, single_object: Encoder
) -> None:
    writer = _with_symbol(record_name, field, symbol)
    store.register(writer)
    record = {**RECORDS[record_name][0], field: symbol}

    decoded = AvroSerde(record_name, store=store).decode(single_object(writer, record))

    assert decoded == {**record, field: "unknown"}


def test_known_enum_symbol_of_extended_writer_is_kept(
    store: SchemaStore, single_object: Encoder
) -> None:
    writer = _with_symbol("Label", "source", "crowd")
    store.register(writer)
    decoded = AvroSerde("Label", store=store).decode(single_object(writer, RECORDS["Label"][0]))
    assert decoded == RECORDS["Label"][0]


def test_unknown_symbol_of_enum_without_default_is_a_decode_error(
    store: SchemaStore, single_object: Encoder
) -> None:
    writer = _with_symbol("Label", "objective", "hierarchical")
    store.register(writer)
    record = {**RECORDS["Label"][0], "objective": "hierarchical"}
    with pytest.raises(DecodeError, match="hierarchical"):
        AvroSerde("Label", store=store).decode(single_object(writer, record))


def test_numeric_promotion_from_an_older_writer(store: SchemaStore, single_object: Encoder) -> None:
    writer = load_schema_dict("AnnotationRequest")
    _field(writer, "score")["type"] = "float"
    _field(writer, "model_version")["type"] = "int"
    store.register(writer)
    record = {**RECORDS["AnnotationRequest"][0], "score": 0.5, "model_version": 17}

    decoded = AvroSerde("AnnotationRequest", store=store).decode(single_object(writer, record))

    assert decoded == record
    assert type(decoded["score"]) is float


def test_old_schema_registered_in_the_default_store_is_seen_by_serde_for(
    single_object: Encoder,
) -> None:
    old = _without(load_schema_dict("ModelEvent"), "artifact_uri", "reason")
    default_store().register(old)
    record = {
        k: v for k, v in RECORDS["ModelEvent"][0].items() if k not in {"artifact_uri", "reason"}
    }
    decoded = serde_for("ModelEvent").decode(single_object(old, record))
    assert decoded == {**record, "artifact_uri": None, "reason": None}


def _uncertainty(schema: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = _field(schema, "uncertainty")["type"]
    return found


def test_prediction_before_committee_scores_reads_them_as_null(
    store: SchemaStore, single_object: Encoder
) -> None:
    old = load_schema_dict("Prediction")
    _uncertainty(old)["fields"] = [
        f for f in _uncertainty(old)["fields"] if f["name"] not in {"vote_entropy", "kl_consensus"}
    ]
    store.register(old)
    record = copy.deepcopy(RECORDS["Prediction"][0])
    for name in ("vote_entropy", "kl_consensus"):
        del record["uncertainty"][name]

    decoded = AvroSerde("Prediction", store=store).decode(single_object(old, record))

    assert decoded["uncertainty"] == {
        **record["uncertainty"],
        "vote_entropy": None,
        "kl_consensus": None,
    }


def test_reader_before_committee_scores_ignores_them(
    store: SchemaStore, single_object: Encoder
) -> None:
    current = load_schema_dict("Prediction")
    store.register(current)
    old_reader = load_schema_dict("Prediction")
    _uncertainty(old_reader)["fields"] = _uncertainty(old_reader)["fields"][:3]
    data = single_object(current, RECORDS["Prediction"][0])

    from fastavro import parse_schema, schemaless_reader

    decoded = schemaless_reader(
        io.BytesIO(data[10:]), parse_schema(current), parse_schema(old_reader)
    )

    assert set(decoded["uncertainty"]) == {"least_confidence", "margin", "entropy"}


def test_labels_of_the_earlier_release_decode_with_an_empty_history(single_object: Encoder) -> None:
    """``schemas/previous/label-1.avsc`` ships so that labels written before ``history`` existed
    still decode in the default store."""
    old = _without(load_schema_dict("Label"), "history")
    record = {k: v for k, v in RECORDS["Label"][0].items() if k != "history"}
    data = single_object(old, record)
    assert data[2:10] in default_store()
    assert serde_for("Label").decode(data) == {**record, "history": []}
