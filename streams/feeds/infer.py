"""Inferring a :class:`FeedProfile` from a sample of a feed's records.

Roles are decided by what the values look like across the sample (:mod:`...feeds.stats`), in an
order where each role claims its fields before the next looks: title, source id, images,
product URL, category (:mod:`...feeds.hierarchy`), prices (:mod:`...feeds.pricing`), then
brand, description, gender, sizes, retailer and the remaining short fields as attributes. An
operator's overrides are applied first and always win.

A feed that carries several record shapes (different key sets) is segmented by its top-level
keys (:func:`segment`) and profiled per shape (:func:`infer_profiles`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Final

from prodcat.streams.feeds import roles
from prodcat.streams.feeds.hierarchy import find_category
from prodcat.streams.feeds.pricing import find_prices
from prodcat.streams.feeds.profile import ROLES, FeedProfile, FieldSource, key_fingerprint
from prodcat.streams.feeds.stats import Sample, sample_columns

__all__ = ["Override", "choose_profile", "infer_profile", "infer_profiles", "segment"]

Override = FieldSource | str | Sequence[str]
"""An operator's pin for one role: a full source, or the source path(s) to read it from."""

_SHAPE_SIMILARITY: Final = 0.6
_MIN_SEGMENT: Final = 20
_KEY_PRESENCE: Final = 0.5


def _keys(record: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(key for key in record if isinstance(key, str))


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def segment(records: Sequence[Mapping[str, Any]]) -> dict[str, list[int]]:
    """Record shapes of a feed: shape key -> indices of its records.

    Records whose top-level key sets are alike (Jaccard >= 0.6; optional keys do not split a
    feed) form one shape; shapes smaller than 20 records (or 5%) join the most similar one. A
    feed with a single shape has the key ``""``.
    """
    groups: dict[frozenset[str], list[int]] = {}
    for index, record in enumerate(records):
        groups.setdefault(_keys(record), []).append(index)
    clusters: list[tuple[frozenset[str], list[int]]] = []
    for keys, indices in sorted(groups.items(), key=lambda item: -len(item[1])):
        best = max(clusters, key=lambda c: _jaccard(keys, c[0]), default=None)
        if best is not None and _jaccard(keys, best[0]) >= _SHAPE_SIMILARITY:
            best[1].extend(indices)
        else:
            clusters.append((keys, list(indices)))
    floor = max(_MIN_SEGMENT, len(records) // 20)
    large = [c for c in clusters if len(c[1]) >= floor] or clusters[:1]
    for keys, indices in clusters:
        if all(c[0] is not keys for c in large):
            target = max(large, key=lambda c: _jaccard(keys, c[0]))
            target[1].extend(indices)
    if len(large) == 1:
        return {"": sorted(large[0][1])}
    return {key_fingerprint(keys)[:8]: sorted(indices) for keys, indices in large}


def choose_profile(
    record: Mapping[str, Any], profiles: Sequence[FeedProfile]
) -> FeedProfile | None:
    """The profile whose keys best match ``record``'s top-level keys (None when there is none)."""
    if len(profiles) <= 1:
        return profiles[0] if profiles else None
    keys = _keys(record)
    return max(profiles, key=lambda profile: _jaccard(keys, frozenset(profile.keys)))


def _override_source(
    role: str, spec: Override, sample: Sample, taxonomy: Mapping[int, list[str]] | None
) -> FieldSource:
    if isinstance(spec, FieldSource):
        return spec
    paths = (spec,) if isinstance(spec, str) else tuple(spec)
    evidence = "operator override"
    if role == "category":
        if len(paths) > 1:
            return FieldSource(role, paths, kind="columns", evidence=evidence)
        inferred = find_category(
            sample.restricted(paths), titles={}, claimed=set(), taxonomy=taxonomy
        )
        if inferred is not None:
            return FieldSource(
                role,
                paths,
                kind=inferred.kind,
                delimiter=inferred.delimiter,
                split=inferred.split,
                evidence=evidence,
            )
        return FieldSource(role, paths, kind="columns", evidence=evidence)
    if role in ("price", "list_price"):
        found = find_prices(sample.restricted(paths), set())
        scale, currency = (found[0].scale, found[0].currency) if found else (1.0, None)
        return FieldSource(
            role, paths, kind="money", scale=scale, currency=currency, evidence=evidence
        )
    kinds = {
        "price": "money",
        "list_price": "money",
        "currency": "currency",
        "image_urls": "urls",
        "gender": "gender",
        "sizes": "sizes",
        "attributes": "attributes",
    }
    return FieldSource(role, paths, kind=kinds.get(role, "text"), evidence=evidence)


def infer_profile(
    records: Sequence[Mapping[str, Any]],
    *,
    feed: str,
    google_taxonomy: Mapping[int, list[str]] | None = None,
    overrides: Mapping[str, Override] | None = None,
    shape: str = "",
    version: int = 1,
) -> FeedProfile:
    """The profile of ``records`` (a sample of one feed, taken as one record shape).

    ``overrides`` (role -> :data:`Override`) win over inference and are kept in the profile, so
    that passing ``profile.overrides`` to the next inference keeps them. Needs no minimum number
    of records, but decides better with more: a few hundred are plenty for most feeds.
    """
    sample = sample_columns(records)
    fields: dict[str, FieldSource] = {}
    pinned: dict[str, FieldSource] = {}
    for role, spec in (overrides or {}).items():
        if role not in ROLES:
            raise ValueError(f"cannot override unknown role {role!r}")
        pinned[role] = fields[role] = _override_source(role, spec, sample, google_taxonomy)
    claimed = {path for source in fields.values() for path in source.sources}

    def take(source: FieldSource | None) -> None:
        if source is not None and source.role not in fields:
            fields[source.role] = source
            claimed.update(source.sources)

    if "title" not in fields:
        take(roles.find_title(sample, claimed))
    titles = roles.title_texts(sample, fields.get("title"))
    title = fields.get("title")
    near = (
        sample.columns[title.sources[0]].parent
        if title and title.sources[0] in sample.columns
        else None
    )
    if "source_id" not in fields:
        take(roles.find_id(sample, claimed, near))
    if "image_urls" not in fields:
        take(roles.find_images(sample, claimed))
    if "product_url" not in fields:
        take(roles.find_product_url(sample, claimed))
    if "category" not in fields:
        take(find_category(sample, titles=titles, claimed=claimed, taxonomy=google_taxonomy))
    if "price" not in fields:
        for source in find_prices(sample, claimed):
            take(source)
    if "brand" not in fields:
        take(roles.find_brand(sample, claimed, titles))
    if "description" not in fields:
        take(roles.find_description(sample, claimed))
    for finder in (roles.find_gender, roles.find_sizes, roles.find_retailer):
        take(finder(sample, claimed))
    take(roles.find_attributes(sample, claimed, near))
    counts: Counter[str] = Counter(key for record in records for key in _keys(record))
    keys = tuple(
        sorted(key for key, count in counts.items() if count >= _KEY_PRESENCE * len(records))
    )
    return FeedProfile(
        feed=feed,
        fields={role: fields[role] for role in ROLES if role in fields},
        shape=shape,
        version=version,
        sample_size=len(records),
        fingerprint=key_fingerprint(keys),
        keys=keys,
        overrides=pinned,
    )


def infer_profiles(
    records: Sequence[Mapping[str, Any]],
    *,
    feed: str,
    google_taxonomy: Mapping[int, list[str]] | None = None,
    overrides: Mapping[str, Override] | None = None,
    version: int = 1,
) -> dict[str, FeedProfile]:
    """One profile per record shape of ``records`` (shape key -> profile; see :func:`segment`)."""
    return {
        shape: infer_profile(
            [records[i] for i in indices],
            feed=feed,
            google_taxonomy=google_taxonomy,
            overrides=overrides,
            shape=shape,
            version=version,
        )
        for shape, indices in segment(records).items()
    }
