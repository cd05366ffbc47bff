"""Confluent Schema Registry framing, against the real HTTP fake registry of ``conftest.py``."""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from prodcat.schemas import (
    AvroSerde,
    DecodeError,
    EncodeError,
    RegistryError,
    UnknownSchemaError,
    load_schema_dict,
    load_schema_text,
)
from tests.schemas.conftest import RECORDS, FakeSchemaRegistry

TOPIC = "products.normalized"


@pytest.fixture
def serdes() -> Iterator[list[AvroSerde]]:
    """Collects serdes built by a test and closes their HTTP clients afterwards."""
    built: list[AvroSerde] = []
    yield built
    for serde in built:
        serde.close()


def _serde(
    serdes: list[AvroSerde], name: str, registry: FakeSchemaRegistry, **kw: Any
) -> AvroSerde:
    serde = AvroSerde(name, registry_url=registry.url, **kw)
    serdes.append(serde)
    return serde


def _schema_id(data: bytes) -> int:
    magic, schema_id = struct.unpack(">bI", data[:5])
    assert magic == 0
    value: int = schema_id
    return value


def test_encode_registers_and_frames_with_the_schema_id(
    schema_registry: FakeSchemaRegistry, serdes: list[AvroSerde]
) -> None:
    serde = _serde(serdes, "Product", schema_registry, topic=TOPIC)
    record = RECORDS["Product"][0]

    data = serde.encode(record)

    assert data[0] == 0
    subject = f"{TOPIC}-value"
    assert schema_registry.subjects == {subject: [_schema_id(data)]}
    registered = schema_registry.schemas[_schema_id(data)]
    assert json.loads(registered) == load_schema_dict("Product")
    assert registered == load_schema_text("Product").strip()  # as shipped, logicalType kept
    assert f"/subjects/{subject}/versions" in schema_registry.paths("POST")
    assert serde.decode(data) == record


def test_registration_happens_once_per_serde(
    schema_registry: FakeSchemaRegistry, serdes: list[AvroSerde]
) -> None:
    serde = _serde(serdes, "Product", schema_registry, topic=TOPIC)
    first = serde.encode_many(RECORDS["Product"])
    second = serde.encode_many(RECORDS["Product"])
    assert first == second
    assert len(schema_registry.paths("POST")) == 1
    assert [serde.decode(d) for d in first] == RECORDS["Product"]


def test_a_fresh_consumer_fetches_the_writer_schema_by_id(
    schema_registry: FakeSchemaRegistry, serdes: list[AvroSerde], record_name: str
) -> None:
    topic = f"t.{record_name.lower()}"
    data = [
        _serde(serdes, record_name, schema_registry, topic=topic).encode(r)
        for r in RECORDS[record_name]
    ]
    consumer = _serde(serdes, record_name, schema_registry, topic=topic)

    assert [consumer.decode(d) for d in data] == RECORDS[record_name]

    schema_id = _schema_id(data[0])
    lookups = [
        (path, query)
        for method, path, query, _ in schema_registry.requests
        if method == "GET" and path == f"/schemas/ids/{schema_id}"
    ]
    assert lookups  # the consumer had not seen the id: it asked the registry
    assert lookups[-1][1].get("subject") == f"{topic}-value"


def test_timestamps_are_int_milliseconds(
    schema_registry: FakeSchemaRegistry, serdes: list[AvroSerde]
) -> None:
    serde = _serde(serdes, "Label", schema_registry, topic="labels")
    decoded = serde.decode(serde.encode(RECORDS["Label"][0]))
    assert type(decoded["labelled_at"]) is int
    assert decoded["labelled_at"] == RECORDS["Label"][0]["labelled_at"]


def test_without_topic_the_subject_is_the_record_name(
    schema_registry: FakeSchemaRegistry, serdes: list[AvroSerde]
) -> None:
    serde = _serde(serdes, "ModelEvent", schema_registry)
    data = serde.encode(RECORDS["ModelEvent"][0])
    assert list(schema_registry.subjects) == ["prodcat.ModelEvent"]
    assert serde.decode(data) == RECORDS["ModelEvent"][0]


def test_key_serde_uses_the_key_subject(
    schema_registry: FakeSchemaRegistry, serdes: list[AvroSerde]
) -> None:
    serde = _serde(serdes, "Label", schema_registry, topic="labels", is_key=True)
    serde.encode(RECORDS["Label"][1])
    assert list(schema_registry.subjects) == ["labels-key"]


def test_same_schema_on_two_topics_shares_the_id(
    schema_registry: FakeSchemaRegistry, serdes: list[AvroSerde]
) -> None:
    a = _serde(serdes, "DeadLetter", schema_registry, topic="a").encode(RECORDS["DeadLetter"][0])
    b = _serde(serdes, "DeadLetter", schema_registry, topic="b").encode(RECORDS["DeadLetter"][0])
    assert a == b
    assert sorted(schema_registry.subjects) == ["a-value", "b-value"]


def test_old_writer_registered_by_another_producer_is_resolved(
    schema_registry: FakeSchemaRegistry, serdes: list[AvroSerde]
) -> None:
    old = load_schema_dict("Product")
    old["fields"] = [f for f in old["fields"] if f["name"] not in {"attributes", "sizes"}]
    record = {k: v for k, v in RECORDS["Product"][0].items() if k not in {"attributes", "sizes"}}
    with SchemaRegistryClient({"url": schema_registry.url}) as client:
        producer = AvroSerializer(
            client, json.dumps(old), conf={"subject.name.strategy.type": "TOPIC"}
        )
        data = producer(record, SerializationContext(TOPIC, MessageField.VALUE))
    assert isinstance(data, bytes)

    decoded = _serde(serdes, "Product", schema_registry, topic=TOPIC).decode(data)

    assert decoded == {**record, "attributes": {}, "sizes": []}


def test_unknown_schema_id(schema_registry: FakeSchemaRegistry, serdes: list[AvroSerde]) -> None:
    serde = _serde(serdes, "Product", schema_registry, topic=TOPIC)
    body = serde.encode(RECORDS["Product"][0])[5:]
    with pytest.raises(UnknownSchemaError, match="not in the registry") as info:
        serde.decode(struct.pack(">bI", 0, 4242) + body)
    assert info.value.__cause__ is not None
    assert "/schemas/ids/4242" in schema_registry.paths("GET")


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00\x00\x00\x00\x01", b"\x07\x00\x00\x00\x01\x02\x03", b"\xc3\x01" + bytes(20)],
    ids=["empty", "header-only", "bad-magic", "single-object"],
)
def test_bad_framing_is_a_decode_error(
    data: bytes, schema_registry: FakeSchemaRegistry, serdes: list[AvroSerde]
) -> None:
    serde = _serde(serdes, "Product", schema_registry, topic=TOPIC)
    with pytest.raises(DecodeError) as info:
        serde.decode(data)
    assert not isinstance(info.value, UnknownSchemaError)


def test_truncated_body_is_a_decode_error(
    schema_registry: FakeSchemaRegistry, serdes: list[AvroSerde]
) -> None:
    serde = _serde(serdes, "Product", schema_registry, topic=TOPIC)
    data = serde.encode(RECORDS["Product"][0])
    with pytest.raises(DecodeError):
        serde.decode(data[:-30])


def test_invalid_record_is_an_encode_error(
    schema_registry: FakeSchemaRegistry, serdes: list[AvroSerde]
) -> None:
    serde = _serde(serdes, "Product", schema_registry, topic=TOPIC)
    for record in ({**RECORDS["Product"][0], "title": 3}, {**RECORDS["Product"][0], "x": 1}):
        with pytest.raises(EncodeError):
            serde.encode(record)


def test_unreachable_registry_is_a_registry_error(serdes: list[AvroSerde]) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    serde = AvroSerde(
        "Product",
        registry_url=f"http://127.0.0.1:{port}",
        topic=TOPIC,
        registry_config={"max.retries": 0},
    )
    serdes.append(serde)
    with pytest.raises(RegistryError) as info:
        serde.encode(RECORDS["Product"][0])
    assert not isinstance(info.value, EncodeError | DecodeError)
    assert info.value.__cause__ is not None


def test_invalid_registry_configuration_is_a_registry_error() -> None:
    with pytest.raises(RegistryError, match="Unrecognized properties"):
        AvroSerde("Product", registry_url="http://127.0.0.1:1", registry_config={"bogus": "x"})
    with pytest.raises(RegistryError, match="Invalid url"):
        AvroSerde("Product", registry_url="ftp://registry")
