"""Round trips of every shipped schema in Avro single-object encoding, and the error contract."""

from __future__ import annotations

import contextlib
import copy
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prodcat.schemas import (
    SINGLE_OBJECT_MARKER,
    AvroSerde,
    DecodeError,
    EncodeError,
    SchemaError,
    SchemaStore,
    SerdeError,
    UnknownSchemaError,
    fingerprint,
    load_schema,
    load_schema_dict,
    load_schema_text,
    schema_names,
    serde_for,
)
from tests.schemas.conftest import RECORDS

SHIPPED = [
    "AnnotationRequest",
    "DeadLetter",
    "FeedProfile",
    "Label",
    "ModelEvent",
    "Prediction",
    "Product",
    "SimilarityJudgement",
    "Taxonomy",
]


# --- loading and fingerprints ---------------------------------------------------------------


def test_all_nine_schemas_are_shipped() -> None:
    assert list(schema_names()) == SHIPPED
    assert sorted(RECORDS) == SHIPPED


@pytest.mark.parametrize(
    ("alias", "full_name"),
    [
        ("Product", "prodcat.Product"),
        ("product", "prodcat.Product"),
        ("prodcat.Product", "prodcat.Product"),
        ("annotation_request", "prodcat.AnnotationRequest"),
        ("DeadLetter", "prodcat.DeadLetter"),
        ("model_event", "prodcat.ModelEvent"),
    ],
)
def test_load_schema_accepts_record_name_full_name_and_file_stem(
    alias: str, full_name: str
) -> None:
    schema = load_schema(alias)
    assert schema["name"] == full_name
    assert schema is load_schema(full_name)  # parsed once, cached


def test_unknown_schema_name() -> None:
    with pytest.raises(SchemaError, match="no shipped Avro schema named 'Nope'") as info:
        load_schema("Nope")
    assert isinstance(info.value.__cause__, KeyError)


def test_schemas_load_from_the_package_not_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "product.avsc").write_text("not a schema")  # decoys in the CWD
    (tmp_path / "label.avsc").write_text("{}")
    code = "from prodcat import schemas; print(schemas.load_schema('product')['name'])"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "prodcat.Product"


def test_fingerprint_matches_the_avro_spec_test_vector() -> None:
    # Avro's share/test/data/schema-tests.txt: "null" -> 7195948357588979594 (a Java long).
    assert fingerprint('"null"') == (7195948357588979594).to_bytes(8, "little", signed=True)


def test_fingerprint_uses_parsing_canonical_form() -> None:
    schema = load_schema_dict("Product")
    bare = copy.deepcopy(schema)
    bare.pop("doc")
    for field in bare["fields"]:
        field.pop("doc", None)
        field.pop("default", None)
    bare["fields"][-1]["type"] = "long"  # PCF drops logicalType, as Java's SchemaNormalization
    assert fingerprint(bare) == fingerprint(schema) == fingerprint(load_schema_text("Product"))
    assert fingerprint(load_schema("Product")) == fingerprint(schema)


# --- round trips ------------------------------------------------------------------------------


def test_round_trip_is_dict_equal(record_name: str, store: SchemaStore) -> None:
    serde = AvroSerde(record_name, store=store)
    for record in RECORDS[record_name]:
        data = serde.encode(record)
        decoded = serde.decode(data)
        assert decoded == record
        assert type(decoded) is dict


def test_header_is_marker_and_fingerprint(record_name: str, store: SchemaStore) -> None:
    data = AvroSerde(record_name, store=store).encode(RECORDS[record_name][0])
    expected = fingerprint(load_schema_dict(record_name))
    assert data[:2] == b"\xc3\x01" == SINGLE_OBJECT_MARKER
    assert data[2:10] == expected
    assert expected in store


def test_timestamps_stay_int_milliseconds(record_name: str, store: SchemaStore) -> None:
    serde = AvroSerde(record_name, store=store)
    decoded = serde.decode(serde.encode(RECORDS[record_name][0]))
    millis = {"type": "long", "logicalType": "timestamp-millis"}
    timestamps = [f["name"] for f in load_schema_dict(record_name)["fields"] if f["type"] == millis]
    assert len(timestamps) == 1
    for name in timestamps:
        assert type(decoded[name]) is int


def test_defaulted_fields_may_be_omitted_on_encode(store: SchemaStore) -> None:
    serde = AvroSerde("Product", store=store)
    required = {"product_id": "p", "feed": "f", "title": "t", "content_hash": "h", "seen_at": 5}
    assert serde.decode(serde.encode(required)) == {**RECORDS["Product"][1], **required}


def test_encode_many_matches_encode(record_name: str, store: SchemaStore) -> None:
    serde = AvroSerde(record_name, store=store)
    records = RECORDS[record_name] * 3
    encoded = serde.encode_many(iter(records))
    assert encoded == [serde.encode(r) for r in records]
    assert [serde.decode(d) for d in encoded] == records
    assert serde.encode_many([]) == []


def test_encode_does_not_modify_the_record(store: SchemaStore) -> None:
    record = copy.deepcopy(RECORDS["Product"][0])
    AvroSerde("Product", store=store).encode(record)
    AvroSerde("Product", store=store).encode_many([record])
    assert record == RECORDS["Product"][0]


def test_serde_for_is_shared_per_record() -> None:
    assert serde_for("Product") is serde_for("product") is serde_for("prodcat.Product")
    assert serde_for("Product") is not serde_for("Label")
    data = serde_for("Label").encode(RECORDS["Label"][0])
    assert serde_for("Label").decode(data) == RECORDS["Label"][0]


# --- encode errors ----------------------------------------------------------------------------


def _product(**changes: Any) -> dict[str, Any]:
    return {**RECORDS["Product"][0], **changes}


@pytest.mark.parametrize(
    ("record", "match"),
    [
        (_product(title=None), "title"),
        (_product(title=3), "title"),
        (_product(brand=5), "brand"),
        (_product(sizes=[1, 2]), "sizes"),
        (_product(attributes={"colour": 1}), "attributes"),
        (_product(price={"value": "cheap", "currency": "EUR"}), "convert string to float"),
        (_product(price={"currency": "EUR"}), "value"),
        (_product(seen_at="yesterday"), "seen_at"),
        (_product(seen_at=datetime(2024, 1, 1, tzinfo=UTC)), "seen_at"),
        (_product(seen_at=2**70), "too large"),
        ({k: v for k, v in _product().items() if k != "content_hash"}, "content_hash"),
        (_product(atributes={}), "unknown fields atributes"),
        (["not", "a", "mapping"], "expected a mapping"),
    ],
    ids=[
        "null-title",
        "int-title",
        "int-in-union",
        "int-in-array",
        "int-in-map",
        "bad-nested-record",
        "missing-nested-field",
        "str-timestamp",
        "datetime-timestamp",
        "long-overflow",
        "missing-required",
        "unknown-field",
        "not-a-mapping",
    ],
)
def test_invalid_record_raises_encode_error(record: Any, match: str, store: SchemaStore) -> None:
    serde = AvroSerde("Product", store=store)
    with pytest.raises(EncodeError, match=match):
        serde.encode(record)
    with pytest.raises(EncodeError, match=match):
        serde.encode_many([RECORDS["Product"][0], record])


def test_encode_error_keeps_the_fastavro_cause(store: SchemaStore) -> None:
    with pytest.raises(EncodeError) as info:
        AvroSerde("Product", store=store).encode(_product(title=3))
    assert isinstance(info.value.__cause__, TypeError)


# --- decode errors ----------------------------------------------------------------------------


@pytest.fixture
def product_bytes(store: SchemaStore) -> bytes:
    return AvroSerde("Product", store=store).encode(RECORDS["Product"][0])


@pytest.mark.parametrize(
    "data",
    [b"", b"\xc3", b"\xc3\x01", b"\xc3\x01\x00\x01\x02", b"garbage bytes, not avro at all", b"{}"],
)
def test_garbage_raises_decode_error(data: bytes, store: SchemaStore) -> None:
    with pytest.raises(DecodeError) as info:
        AvroSerde("Product", store=store).decode(data)
    assert not isinstance(info.value, UnknownSchemaError)


def test_wrong_marker(product_bytes: bytes, store: SchemaStore) -> None:
    for marker in (b"\xc3\x02", b"\x00\x01", b"\x01\xc3"):
        with pytest.raises(DecodeError, match="marker"):
            AvroSerde("Product", store=store).decode(marker + product_bytes[2:])


def test_confluent_framed_bytes_are_not_single_object(store: SchemaStore) -> None:
    with pytest.raises(DecodeError, match="marker 0000"):
        AvroSerde("Product", store=store).decode(b"\x00\x00\x00\x00\x01" + b"\x02" * 40)


def test_unknown_fingerprint(product_bytes: bytes, store: SchemaStore) -> None:
    data = product_bytes[:2] + bytes(8) + product_bytes[10:]
    with pytest.raises(UnknownSchemaError, match="0000000000000000") as info:
        AvroSerde("Product", store=store).decode(data)
    assert isinstance(info.value, DecodeError)
    assert isinstance(info.value.__cause__, KeyError)


def test_every_truncation_raises_decode_error(product_bytes: bytes, store: SchemaStore) -> None:
    serde = AvroSerde("Product", store=store)
    for end in range(len(product_bytes)):
        with pytest.raises(DecodeError):
            serde.decode(product_bytes[:end])


def test_truncated_body_keeps_the_eof_cause(product_bytes: bytes, store: SchemaStore) -> None:
    serde = AvroSerde("Product", store=store)
    with pytest.raises(DecodeError, match="EOFError") as info:
        serde.decode(product_bytes[:-40])
    assert isinstance(info.value.__cause__, EOFError)
    # fastavro reports a varint cut short as an IndexError
    with pytest.raises(DecodeError, match="IndexError") as info:
        serde.decode(product_bytes[:-1])
    assert isinstance(info.value.__cause__, IndexError)


def test_trailing_bytes(product_bytes: bytes, store: SchemaStore) -> None:
    with pytest.raises(DecodeError, match="1 trailing bytes"):
        AvroSerde("Product", store=store).decode(product_bytes + b"\x00")


def test_invalid_utf8_in_body(store: SchemaStore) -> None:
    serde = AvroSerde("Product", store=store)
    data = serde.encode(_product(product_id="ab"))
    corrupt = data.replace(b"\x04ab", b"\x04\xff\xfe", 1)
    with pytest.raises(DecodeError, match="UnicodeDecodeError"):
        serde.decode(corrupt)


def test_message_of_another_record_type(store: SchemaStore) -> None:
    label = AvroSerde("Label", store=store).encode(RECORDS["Label"][0])
    with pytest.raises(DecodeError, match="SchemaResolutionError"):
        AvroSerde("Product", store=store).decode(label)


@given(body=st.binary(max_size=200))
def test_arbitrary_body_decodes_or_raises_decode_error(body: bytes) -> None:
    serde = serde_for("Product")
    header = SINGLE_OBJECT_MARKER + fingerprint(load_schema_dict("Product"))
    with contextlib.suppress(DecodeError):
        serde.decode(header + body)


def test_errors_share_one_base_class() -> None:
    for error in (EncodeError, DecodeError, UnknownSchemaError, SchemaError):
        assert issubclass(error, SerdeError)
