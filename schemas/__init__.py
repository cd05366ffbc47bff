"""prodcat schemas: the Avro schemas of every topic and their serde.

Typical use::

    from prodcat.schemas import serde_for

    serde = serde_for("Product")
    data = serde.encode(record)      # Avro single-object encoding
    record == serde.decode(data)
"""

from prodcat.schemas.exceptions import (
    DecodeError,
    EncodeError,
    RegistryError,
    SchemaError,
    SerdeError,
    UnknownSchemaError,
)
from prodcat.schemas.registry import (
    ParsedSchema,
    SchemaStore,
    default_store,
    fingerprint,
    load_schema,
    load_schema_dict,
    load_schema_text,
    schema_names,
)
from prodcat.schemas.serde import SINGLE_OBJECT_MARKER, AvroSerde, decode_as, serde_for

__all__ = [
    "SINGLE_OBJECT_MARKER",
    "AvroSerde",
    "DecodeError",
    "EncodeError",
    "ParsedSchema",
    "RegistryError",
    "SchemaError",
    "SchemaStore",
    "SerdeError",
    "UnknownSchemaError",
    "decode_as",
    "default_store",
    "fingerprint",
    "load_schema",
    "load_schema_dict",
    "load_schema_text",
    "schema_names",
    "serde_for",
]
