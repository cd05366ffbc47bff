"""The TypedDicts of ``prodcat.schemas.records`` match the Avro schemas, so they cannot drift."""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, get_args, get_origin, get_type_hints

import pytest

from prodcat.schemas import decode_as, load_schema_dict, schema_names, serde_for
from prodcat.schemas import records as records_module
from prodcat.schemas.records import RECORD_TYPES, Prediction, Product
from tests.schemas.conftest import RECORDS

_PRIMITIVES: dict[str, Any] = {
    "string": str,
    "bytes": bytes,
    "int": int,
    "long": int,
    "float": float,
    "double": float,
    "boolean": bool,
}


def _named_records(schema: Any, found: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every record schema defined in ``schema`` (itself and nested ones), by short name."""
    if isinstance(schema, list):
        for branch in schema:
            _named_records(branch, found)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind == "record":
            found[schema["name"].rpartition(".")[2]] = schema
            for field in schema["fields"]:
                _named_records(field["type"], found)
        elif kind == "array":
            _named_records(schema["items"], found)
        elif kind == "map":
            _named_records(schema["values"], found)
        elif isinstance(kind, dict | list):
            _named_records(kind, found)
    return found


def _expected(avro: Any) -> Any:
    """The Python type an Avro type reads as (records as their TypedDict of the same name)."""
    if isinstance(avro, list):
        branches = [_expected(branch) for branch in avro if branch != "null"]
        union = typing.Union[tuple(branches)]  # noqa: UP007  # built from a runtime tuple
        return union | None if "null" in avro else union
    if isinstance(avro, str):
        if avro in _PRIMITIVES:
            return _PRIMITIVES[avro]
        return getattr(records_module, avro.rpartition(".")[2])
    kind = avro["type"]
    if avro.get("logicalType") == "timestamp-millis":
        return int
    if kind == "record":
        return getattr(records_module, avro["name"].rpartition(".")[2])
    if kind == "array":
        return list[_expected(avro["items"])]  # type: ignore[misc]  # a runtime-built alias
    if kind == "map":
        return dict[str, _expected(avro["values"])]  # type: ignore[misc]  # as above
    if kind == "enum":
        return Literal[tuple(avro["symbols"])]
    return _expected(kind)


def _same(actual: Any, expected: Any) -> bool:
    if get_origin(actual) in (typing.Union, types.UnionType):
        return get_origin(expected) in (typing.Union, types.UnionType) and set(
            get_args(actual)
        ) == set(get_args(expected))
    return bool(actual == expected)


def test_every_schema_has_a_record_type() -> None:
    assert sorted(RECORD_TYPES) == sorted(n.rpartition(".")[2] for n in schema_names())


@pytest.mark.parametrize("name", sorted(RECORD_TYPES))
def test_typed_dict_keys_and_types_match_the_schema(name: str) -> None:
    schemas = _named_records(load_schema_dict(name), {})
    assert name in schemas
    for record_name, schema in schemas.items():
        typed = getattr(records_module, record_name)
        hints = get_type_hints(typed)
        fields = {field["name"]: field["type"] for field in schema["fields"]}
        assert list(hints) == list(fields), record_name  # same names, in schema order
        assert typed.__required_keys__ == frozenset(fields), record_name
        for field, avro in fields.items():
            expected = _expected(avro)
            assert _same(hints[field], expected), f"{record_name}.{field}: {hints[field]}"


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_sample_records_fit_their_typed_dict(name: str) -> None:
    typed = RECORD_TYPES[name]
    for record in RECORDS[name]:
        assert set(record) == set(get_type_hints(typed)), name
        for field, hint in get_type_hints(typed).items():
            assert _fits(record[field], hint), f"{name}.{field} = {record[field]!r}"


def _fits(value: Any, hint: Any) -> bool:
    """A structural check of ``value`` against ``hint`` (the types the records module uses)."""
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, branch) for branch in get_args(hint))
    if hint is type(None):
        return value is None
    if origin is Literal:
        return value in get_args(hint)
    if origin is list:
        return isinstance(value, list) and all(_fits(v, get_args(hint)[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(
            isinstance(k, str) and _fits(v, get_args(hint)[1]) for k, v in value.items()
        )
    if typing.is_typeddict(hint):
        hints = get_type_hints(hint)
        return (
            isinstance(value, dict)
            and set(value) == set(hints)
            and all(_fits(value[k], h) for k, h in hints.items())
        )
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def test_decode_as_gives_the_typed_record() -> None:
    serde = serde_for("Product")
    product: Product = decode_as(serde, serde.encode(RECORDS["Product"][0]), Product)
    assert product == RECORDS["Product"][0]


def test_decode_as_refuses_another_record_type() -> None:
    serde = serde_for("Product")
    with pytest.raises(TypeError, match="Prediction"):
        decode_as(serde, serde.encode(RECORDS["Product"][0]), Prediction)
