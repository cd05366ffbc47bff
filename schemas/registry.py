"""The shipped Avro schemas and the fingerprint store used by single-object encoding.

Schemas are read from the package directory (``importlib.resources``), never from the working
directory, and only when first asked for. A schema can be named by its record name
(``"Product"``), its full name (``"prodcat.Product"``) or its file stem (``"product"``).

Fingerprints are CRC-64-AVRO of the Parsing Canonical Form, as 8 little-endian bytes: the
exact bytes that follow the ``C3 01`` marker of the Avro single-object encoding.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
from importlib import resources
from typing import Any, TypeAlias

from fastavro import parse_schema
from fastavro.schema import (
    SchemaParseException,
    UnknownType,
    to_parsing_canonical_form,
)
from fastavro.schema import fingerprint as _fastavro_fingerprint

from prodcat.schemas.exceptions import SchemaError, UnknownSchemaError

__all__ = [
    "ParsedSchema",
    "SchemaStore",
    "default_store",
    "fingerprint",
    "load_schema",
    "load_schema_dict",
    "load_schema_text",
    "schema_names",
]

logger = logging.getLogger(__name__)

ParsedSchema: TypeAlias = dict[str, Any] | list[Any] | str
"""A schema as fastavro's ``parse_schema`` returns it."""

_PACKAGE = "prodcat.schemas"
_SUFFIX = ".avsc"
_PREVIOUS = "previous"  # earlier versions of the shipped schemas, for decoding old records
# Logical types the binary codec leaves as their underlying type, so that records carry
# plain int milliseconds both ways instead of fastavro's datetime objects.
_RAW_LOGICAL_TYPES = frozenset({"timestamp-millis"})
_SCHEMA_ERRORS = (
    SchemaParseException,
    UnknownType,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
)


@functools.cache
def _index() -> dict[str, tuple[str, str]]:
    """Every accepted name of a shipped schema -> (file name, full record name)."""
    index: dict[str, tuple[str, str]] = {}
    for entry in resources.files(_PACKAGE).iterdir():
        if not entry.name.endswith(_SUFFIX):
            continue
        raw = json.loads(entry.read_text(encoding="utf-8"))
        name = raw["name"]
        namespace = raw.get("namespace")
        full = name if "." in name or not namespace else f"{namespace}.{name}"
        target = (entry.name, full)
        for alias in (entry.name[: -len(_SUFFIX)], name, full):
            index[alias] = target
    return index


@functools.cache
def _previous_schemas() -> tuple[str, ...]:
    """Earlier versions of shipped schemas (``previous/*.avsc``): records written by an earlier
    release still decode (resolved to the shipped schema, new fields at their defaults)."""
    folder = resources.files(_PACKAGE).joinpath(_PREVIOUS)
    if not folder.is_dir():
        return ()
    return tuple(
        entry.read_text(encoding="utf-8")
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(_SUFFIX)
    )


def _lookup(name: str) -> tuple[str, str]:
    try:
        return _index()[name]
    except KeyError as exc:
        known = ", ".join(schema_names())
        raise SchemaError(f"no shipped Avro schema named {name!r} (known: {known})") from exc


def schema_names() -> tuple[str, ...]:
    """Record names of all shipped schemas, sorted (``("AnnotationRequest", ...)``)."""
    return tuple(sorted({full.rpartition(".")[2] for _, full in _index().values()}))


def load_schema_text(name: str) -> str:
    """The ``.avsc`` text of a shipped schema, exactly as stored in the package."""
    return _read_text(_lookup(name)[0])


@functools.cache
def _read_text(file_name: str) -> str:
    return resources.files(_PACKAGE).joinpath(file_name).read_text(encoding="utf-8")


def load_schema_dict(name: str) -> dict[str, Any]:
    """A fresh copy of a shipped schema as plain JSON data; safe to modify."""
    loaded: dict[str, Any] = json.loads(load_schema_text(name))
    return loaded


def load_schema(name: str) -> dict[str, Any]:
    """A shipped schema parsed by fastavro (cached; treat it as read-only).

    Every accepted name of a schema gives the same object.
    """
    return _load_parsed(_lookup(name)[1])


@functools.cache
def _load_parsed(full_name: str) -> dict[str, Any]:
    parsed = _parse(load_schema_dict(full_name))
    if not isinstance(parsed, dict):  # pragma: no cover - every shipped schema is a record
        raise SchemaError(f"shipped schema {full_name!r} is not a record")
    return parsed


def fingerprint(schema: Mapping[str, Any] | list[Any] | str) -> bytes:
    """CRC-64-AVRO fingerprint of the schema's Parsing Canonical Form, 8 bytes little-endian.

    ``schema`` is a schema as JSON data, a parsed schema, or JSON text.
    """
    raw = _as_json(schema)
    try:
        canonical = to_parsing_canonical_form(raw)
    except _SCHEMA_ERRORS as exc:
        raise SchemaError(f"not a valid Avro schema: {exc}") from exc
    # fastavro gives the hex of the little-endian bytes (as Java's SchemaNormalization does).
    return bytes.fromhex(_fastavro_fingerprint(canonical, "CRC-64-AVRO"))


class SchemaStore:
    """Writer schemas by fingerprint, for decoding single-object encoded messages.

    Holds the shipped schemas (unless ``include_shipped=False``) and any other version
    registered later, e.g. the previous version of a record still being produced elsewhere.
    Stored schemas are in the form the binary codec uses: timestamp-millis fields read as
    plain ``long``. Registration is thread-safe; lookups take no lock.
    """

    def __init__(
        self,
        schemas: Iterable[Mapping[str, Any] | str] = (),
        *,
        include_shipped: bool = True,
    ) -> None:
        self._schemas: dict[bytes, ParsedSchema] = {}
        self._lock = threading.Lock()
        if include_shipped:
            for name in schema_names():
                self.register(load_schema_dict(name))
            for previous in _previous_schemas():
                self.register(previous)
        for schema in schemas:
            self.register(schema)

    def register(self, schema: Mapping[str, Any] | list[Any] | str) -> bytes:
        """Add a schema (JSON data or JSON text); return its fingerprint. Idempotent."""
        raw = _as_json(schema)
        key = fingerprint(raw)
        if key in self._schemas:
            return key
        parsed = _parse(_strip_raw_logical_types(raw))
        with self._lock:
            self._schemas.setdefault(key, parsed)
        logger.debug("registered Avro schema %s, fingerprint %s", _describe(raw), key.hex())
        return key

    def lookup(self, key: bytes) -> ParsedSchema:
        """The parsed writer schema with fingerprint ``key``.

        Raises:
            UnknownSchemaError: no schema with that fingerprint was registered.
        """
        try:
            return self._schemas[key]
        except KeyError as exc:
            raise UnknownSchemaError(
                f"no Avro schema with fingerprint {key.hex()} in the store "
                f"({len(self._schemas)} known); register the writer schema first"
            ) from exc

    def __contains__(self, key: object) -> bool:
        return key in self._schemas

    def __len__(self) -> int:
        return len(self._schemas)

    def __iter__(self) -> Iterator[bytes]:
        return iter(list(self._schemas))


_default_store: SchemaStore | None = None
_default_store_lock = threading.Lock()


def default_store() -> SchemaStore:
    """The process-wide store used by serdes built without an explicit one (built lazily)."""
    global _default_store
    if _default_store is None:
        with _default_store_lock:
            if _default_store is None:
                _default_store = SchemaStore()
    return _default_store


def _as_json(schema: Mapping[str, Any] | list[Any] | str) -> Any:
    """A deep, plain-JSON copy of ``schema``; a ``str`` is JSON text."""
    try:
        if isinstance(schema, str):
            return json.loads(schema)
        return json.loads(json.dumps(schema, default=_reject))
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"not a valid Avro schema document: {exc}") from exc


def _reject(value: object) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON data")


def _parse(raw: Any) -> ParsedSchema:
    try:
        parsed: ParsedSchema = parse_schema(raw)
    except _SCHEMA_ERRORS as exc:
        raise SchemaError(f"not a valid Avro schema ({_describe(raw)}): {exc}") from exc
    return parsed


def _strip_raw_logical_types(raw: Any) -> Any:
    if isinstance(raw, dict):
        return {
            key: _strip_raw_logical_types(value)
            for key, value in raw.items()
            if not (key == "logicalType" and value in _RAW_LOGICAL_TYPES)
        }
    if isinstance(raw, list):
        return [_strip_raw_logical_types(item) for item in raw]
    return raw


def _describe(raw: Any) -> str:
    if isinstance(raw, dict) and isinstance(raw.get("name"), str):
        namespace = raw.get("namespace")
        name: str = raw["name"]
        return name if "." in name or not namespace else f"{namespace}.{name}"
    return type(raw).__name__
