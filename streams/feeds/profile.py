"""Feed profiles: which source fields of a feed hold which product role, and how to read them.

A :class:`FeedProfile` is plain data. It is inferred from a sample of a feed's records
(:mod:`prodcat.streams.feeds.infer`), applied to every record (:mod:`prodcat.streams.feeds.extract`)
and serialised with :meth:`FeedProfile.to_dict` / :meth:`FeedProfile.from_dict` as plain JSON
values (lists, strings, numbers), so it maps one to one onto an Avro record.

Each role maps to one :class:`FieldSource`: the source paths that hold it (see
:mod:`prodcat.streams.feeds.flatten` for the path syntax), how to read them (``kind`` and its
parameters), and why (``confidence``, ``evidence``, ``examples``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

__all__ = [
    "CATEGORY_KINDS",
    "KINDS",
    "ROLES",
    "FeedProfile",
    "FieldSource",
    "key_fingerprint",
]

ROLES: Final = (
    "title",
    "brand",
    "category",
    "description",
    "price",
    "list_price",
    "currency",
    "image_urls",
    "product_url",
    "source_id",
    "gender",
    "sizes",
    "retailer",
    "attributes",
)
"""Every role a profile can map. ``attributes`` lists the other short fields kept as attributes."""

CATEGORY_KINDS: Final = ("delimited", "list", "columns", "google_id")
KINDS: Final = ("text", "money", "currency", "urls", "gender", "sizes", "options", "attributes")
KINDS_ALL: Final = (*KINDS, *CATEGORY_KINDS)
SPLITS: Final = ("any", "spaced", "tight")
_MAX_EXAMPLES: Final = 3
_MAX_EXAMPLE_LEN: Final = 120


@dataclass(frozen=True)
class FieldSource:
    """Where one role comes from.

    ``sources`` are source paths in priority order: for most roles the first non-empty one wins
    (fallbacks); for ``kind="columns"`` they are the category levels, root first; for
    ``image_urls``, ``gender`` and ``attributes`` all of them are read.

    Kinds and their parameters:

    * ``text``: a scalar, cleaned.
    * ``money``: a price; ``scale`` multiplies the number (``0.01`` for integer cents) and
      ``currency`` is the default ISO code when the value names none.
    * ``currency``: an ISO code or symbol that applies to the prices.
    * ``delimited``: a path in one string split on ``delimiter``; ``split`` says which
      occurrences split: ``spaced`` (surrounded by whitespace), ``tight`` (no whitespace around;
      a piece starting with ``+``, or with a number after a level ending in one, continues the
      previous level) or ``any``.
    * ``list``: a list of levels (or the values under every element of a list of objects,
      ``categories[].name``). ``columns``: one level per source. ``google_id``: a numeric
      Google product category id looked up in the Google taxonomy.
    * ``urls``, ``gender``, ``sizes``, ``options`` (option objects named like "size"),
      ``attributes``.
    """

    role: str
    sources: tuple[str, ...]
    kind: str = "text"
    delimiter: str | None = None
    split: str | None = None
    scale: float = 1.0
    currency: str | None = None
    confidence: float = 1.0
    evidence: str = ""
    examples: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}")
        if self.kind not in KINDS_ALL:
            raise ValueError(f"unknown kind {self.kind!r} for role {self.role!r}")
        if self.split is not None and self.split not in SPLITS:
            raise ValueError(f"unknown split {self.split!r}")
        if not self.sources:
            raise ValueError(f"role {self.role!r} has no source")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence {self.confidence} is outside 0..1")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values, one key per field (None where unset)."""
        return {
            "role": self.role,
            "sources": list(self.sources),
            "kind": self.kind,
            "delimiter": self.delimiter,
            "split": self.split,
            "scale": self.scale,
            "currency": self.currency,
            "confidence": round(self.confidence, 4),
            "evidence": self.evidence,
            "examples": list(self.examples),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FieldSource:
        """The inverse of :meth:`to_dict` (missing optional keys take their defaults)."""
        return cls(
            role=str(data["role"]),
            sources=tuple(str(path) for path in data["sources"]),
            kind=str(data.get("kind") or "text"),
            delimiter=data.get("delimiter"),
            split=data.get("split"),
            scale=float(data.get("scale", 1.0)),
            currency=data.get("currency"),
            confidence=float(data.get("confidence", 1.0)),
            evidence=str(data.get("evidence") or ""),
            examples=tuple(str(item) for item in data.get("examples") or ()),
        )

    def with_examples(self, values: Iterable[Any]) -> FieldSource:
        """A copy holding up to three short example values."""
        examples: list[str] = []
        for value in values:
            text = str(value)
            if len(text) > _MAX_EXAMPLE_LEN:
                text = text[: _MAX_EXAMPLE_LEN - 1] + "…"
            if text and text not in examples:
                examples.append(text)
            if len(examples) == _MAX_EXAMPLES:
                break
        return replace(self, examples=tuple(examples))


@dataclass(frozen=True)
class FeedProfile:
    """How to read one feed (or one record shape of a feed).

    ``shape`` names the record shape within the feed (``""`` when the feed has one shape);
    ``segment`` (the retailer field's source path, and retailer names casefolded) says which
    retailers' records this profile reads, where one feed carries retailers that fill their fields
    differently (None: every record of its shape not claimed by a segment);
    ``fingerprint`` is a hash of ``keys``, the top-level keys present in most sampled records;
    ``overrides`` are the operator's pinned roles, already applied to ``fields``: pass them to
    the next inference so that they survive re-profiling. ``reason`` says why this version
    exists (first profile, re-profiled after drift, operator override), set by the caller.
    """

    feed: str
    fields: Mapping[str, FieldSource]
    shape: str = ""
    version: int = 1
    sample_size: int = 0
    fingerprint: str = ""
    keys: tuple[str, ...] = ()
    overrides: Mapping[str, FieldSource] = field(default_factory=dict)
    reason: str = ""
    segment: tuple[str, tuple[str, ...]] | None = None

    def __post_init__(self) -> None:
        for role, source in self.fields.items():
            if role != source.role:
                raise ValueError(f"field {role!r} holds a source for {source.role!r}")

    def get(self, role: str) -> FieldSource | None:
        """The source of ``role``, or None when the profile does not map it."""
        return self.fields.get(role)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values; fields and overrides as lists in role order."""
        return {
            "feed": self.feed,
            "shape": self.shape,
            "version": self.version,
            "sample_size": self.sample_size,
            "fingerprint": self.fingerprint,
            "keys": list(self.keys),
            "segment": (
                {"path": self.segment[0], "values": list(self.segment[1])} if self.segment else None
            ),
            "fields": [self.fields[role].to_dict() for role in ROLES if role in self.fields],
            "overrides": [
                self.overrides[role].to_dict() for role in ROLES if role in self.overrides
            ],
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeedProfile:
        """The inverse of :meth:`to_dict`."""
        fields = [FieldSource.from_dict(item) for item in data.get("fields") or ()]
        overrides = [FieldSource.from_dict(item) for item in data.get("overrides") or ()]
        segment = data.get("segment")
        return cls(
            segment=(
                (str(segment["path"]), tuple(str(v) for v in segment["values"]))
                if segment
                else None
            ),
            feed=str(data["feed"]),
            shape=str(data.get("shape") or ""),
            version=int(data.get("version", 1)),
            sample_size=int(data.get("sample_size", 0)),
            fingerprint=str(data.get("fingerprint") or ""),
            keys=tuple(str(key) for key in data.get("keys") or ()),
            fields={source.role: source for source in fields},
            overrides={source.role: source for source in overrides},
            reason=str(data.get("reason") or ""),
        )


def key_fingerprint(keys: Iterable[str]) -> str:
    """A short, order-independent hash of a set of keys."""
    text = "\x1f".join(sorted(set(keys)))
    return hashlib.sha1(text.encode("utf-8", "surrogatepass"), usedforsecurity=False).hexdigest()[
        :16
    ]
