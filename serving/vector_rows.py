"""The product-image collection's schema, and rows and hits as the vector store exchanges them.

Besides ``product_id`` and the unit ``vector``, a row holds ``cat_1..cat_6``
(``prodcat.training.taxonomy.path_id`` of each prefix of the category path, ``""`` past its end, so that
one equality restricts a search to a subtree at any level), ``category_path`` (levels joined by
``" > "``, for display), ``model_version``, ``image_url`` and ``sample_bucket`` (a stable hash of
the id that lets the store sample the collection, see :mod:`prodcat.serving.vector_plan`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from pymilvus import DataType, MilvusClient

from prodcat.core.ids import path_id
from prodcat.serving.exceptions import VectorStoreError
from prodcat.serving.vector_plan import CATEGORY_LEVELS, sample_bucket

__all__ = [
    "CATEGORY_FIELDS",
    "OUTPUT_FIELDS",
    "VECTOR",
    "Hit",
    "ImageVector",
    "build_schema",
    "check_schema",
    "to_hit",
    "to_record",
    "unit_vector",
]

VECTOR: Final = "vector"
CATEGORY_FIELDS: Final = [f"cat_{d}" for d in range(1, CATEGORY_LEVELS + 1)]
OUTPUT_FIELDS: Final = ["category_path", "image_url"]
PATH_SEPARATOR: Final = " > "
_MAX_ID: Final = 512
_MAX_TEXT: Final = 4096


@dataclass(frozen=True, slots=True, eq=False)
class ImageVector:
    """One product's image embedding and what search results show about it."""

    product_id: str
    vector: np.ndarray
    category_path: Sequence[str]
    model_version: int
    image_url: str


@dataclass(frozen=True, slots=True)
class Hit:
    """A search result: ``score`` is the cosine similarity (higher is closer)."""

    product_id: str
    score: float
    category_path: list[str] = field(default_factory=list)
    image_url: str = ""


def build_schema(dim: int) -> Any:
    """The collection schema (a pymilvus ``CollectionSchema``)."""
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("product_id", DataType.VARCHAR, is_primary=True, max_length=_MAX_ID)
    schema.add_field(VECTOR, DataType.FLOAT_VECTOR, dim=dim)
    for name in CATEGORY_FIELDS:
        schema.add_field(name, DataType.VARCHAR, max_length=16)
    schema.add_field("category_path", DataType.VARCHAR, max_length=_MAX_TEXT)
    schema.add_field("model_version", DataType.INT64)
    schema.add_field("image_url", DataType.VARCHAR, max_length=_MAX_TEXT)
    schema.add_field("sample_bucket", DataType.INT32)
    return schema


def check_schema(name: str, description: dict[str, Any], dim: int) -> None:
    """Raise :class:`VectorStoreError` unless an existing collection has our fields and ``dim``."""
    fields = {f["name"]: f for f in description.get("fields", [])}
    wanted = {"product_id", VECTOR, *CATEGORY_FIELDS, *OUTPUT_FIELDS, "sample_bucket"}
    missing = wanted - fields.keys()
    if missing:
        raise VectorStoreError(f"collection {name} lacks fields {sorted(missing)}: drop it first")
    found = int(fields[VECTOR].get("params", {}).get("dim", -1))
    if found != dim:
        raise VectorStoreError(f"collection {name} holds {found}-d vectors; milvus.dim is {dim}")


def unit_vector(vector: Any, dim: int, what: str) -> np.ndarray:
    """``vector`` as float32 of length ``dim``, scaled to unit length."""
    array = np.asarray(vector, dtype=np.float32)
    if array.shape != (dim,):
        raise VectorStoreError(f"{what}: vector shape {array.shape}, expected ({dim},)")
    norm = float(np.linalg.norm(array))
    if not np.isfinite(norm) or norm == 0.0:
        raise VectorStoreError(f"{what}: vector is zero or not finite")
    unit: np.ndarray = array / norm
    return unit


def to_record(row: ImageVector, dim: int) -> dict[str, Any]:
    """The Milvus row for ``row``."""
    if not row.product_id or len(row.product_id.encode("utf-8")) > _MAX_ID:
        raise VectorStoreError(f"product_id must have 1-{_MAX_ID} bytes: {row.product_id[:80]!r}")
    levels = [str(level) for level in row.category_path]
    shown = PATH_SEPARATOR.join(levels)
    if max(len(shown.encode("utf-8")), len(row.image_url.encode("utf-8"))) > _MAX_TEXT:
        raise VectorStoreError(f"{row.product_id}: category path or image url over {_MAX_TEXT} B")
    record: dict[str, Any] = {
        "product_id": row.product_id,
        VECTOR: unit_vector(row.vector, dim, row.product_id),
        "category_path": shown,
        "model_version": int(row.model_version),
        "image_url": row.image_url,
        "sample_bucket": sample_bucket(row.product_id),
    }
    for depth, name in enumerate(CATEGORY_FIELDS, start=1):
        record[name] = path_id(levels[:depth]) if len(levels) >= depth else ""
    return record


def to_hit(raw: Any) -> Hit:
    """A :class:`Hit` from one pymilvus search hit (IP distance = cosine for unit vectors)."""
    entity = raw.get("entity") or {}
    shown = str(entity.get("category_path") or "")
    # the primary key comes under its field name (milvus-lite, 2.4+ servers) or as ``id`` (2.3)
    keys = raw.keys()
    return Hit(
        product_id=str(raw["product_id"] if "product_id" in keys else raw["id"]),
        score=float(raw["distance"]),
        category_path=shown.split(PATH_SEPARATOR) if shown else [],
        image_url=str(entity.get("image_url") or ""),
    )
