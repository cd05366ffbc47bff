"""Inferring a :class:`FeedProfile` from a sample of a feed's records.

Roles are decided by what the values look like across the sample (:mod:`...feeds.stats`), in an
order where each role claims its fields before the next looks: title, source id, images,
product URL, category (:mod:`...feeds.hierarchy`), prices (:mod:`...feeds.pricing`), then
brand, description, gender, sizes, retailer and the remaining short fields as attributes. An
operator's overrides are applied first and always win.

A feed that carries several record shapes (different key sets) is segmented by its top-level
keys (:func:`segment`) and profiled per shape (:func:`infer_profiles`). A shape that carries
several retailers (a retailer field with 2 to 50 names) is profiled per retailer too: a retailer
with at least 30 sampled records gets a profile of its own (``segment``) when that profile reads
its records better than the shape's (more titles, prices and category levels); the shape's
profile, inferred again without them, reads the other retailers' records.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import lru_cache
from typing import Any, Final

from prodcat.streams.exceptions import NormalizationError
from prodcat.streams.feeds import roles
from prodcat.streams.feeds.extract import apply_profile
from prodcat.streams.feeds.flatten import getter
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
_MIN_RETAILER: Final = 30  # sampled records a retailer needs for a profile of its own
_MAX_RETAILERS: Final = 50
_BETTER: Final = 0.1  # its own profile must read this much more of it (per record)


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


@lru_cache(maxsize=256)
def _getter(path: str) -> Callable[[Mapping[str, Any]], Any]:
    return getter(path)


def retailer_of(record: Mapping[str, Any], path: str) -> str | None:
    """The record's retailer name at ``path``, casefolded (None when it has none)."""
    value = _getter(path)(record)
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        text = str(value).strip().casefold()
        return text or None
    return None


def choose_profile(
    record: Mapping[str, Any], profiles: Sequence[FeedProfile]
) -> FeedProfile | None:
    """The profile of ``record``'s retailer when one is for it, else the one whose keys best
    match ``record``'s top-level keys among those for no retailer in particular (None when there
    is none)."""
    if len(profiles) <= 1:
        return profiles[0] if profiles else None
    pool = list(profiles)
    if any(profile.segment for profile in pool):
        mine = [p for p in pool if p.segment and retailer_of(record, p.segment[0]) in p.segment[1]]
        pool = mine or [p for p in pool if not p.segment] or pool
        if len(pool) == 1:
            return pool[0]
    keys = _keys(record)
    return max(pool, key=lambda profile: _jaccard(keys, frozenset(profile.keys)))


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
    """One profile per record shape of ``records`` (shape key -> profile; see :func:`segment`),
    and per retailer where a shape's retailers fill their fields differently (module doc)."""
    out: dict[str, FeedProfile] = {}
    for shape, indices in segment(records).items():
        rows = [records[i] for i in indices]

        def infer(part: Sequence[Mapping[str, Any]], key: str) -> FeedProfile:
            return infer_profile(
                part,
                feed=feed,
                google_taxonomy=google_taxonomy,
                overrides=overrides,
                shape=key,
                version=version,
            )

        profile = infer(rows, shape)
        out.update(_by_retailer(rows, profile, infer, google_taxonomy) or {shape: profile})
    return out


def _reads(
    profile: FeedProfile,
    records: Sequence[Mapping[str, Any]],
    google_taxonomy: Mapping[int, list[str]] | None,
) -> float:
    """How much of ``records`` a profile reads, per record: a title, a price, category levels."""
    total = 0.0
    for record in records:
        try:
            product = apply_profile(
                record,
                profile,
                feed=profile.feed,
                key=None,
                seen_at_ms=0,
                google_taxonomy=google_taxonomy,
            )
        except NormalizationError:
            continue
        total += 1 + bool(product["price"]) + min(len(product["category_path"]), 6)
    return total / len(records) if records else 0.0


def _by_retailer(
    records: Sequence[Mapping[str, Any]],
    profile: FeedProfile,
    infer: Callable[[Sequence[Mapping[str, Any]], str], FeedProfile],
    google_taxonomy: Mapping[int, list[str]] | None,
) -> dict[str, FeedProfile] | None:
    """Profiles of the retailers ``profile`` reads worse than their own would (None: none)."""
    retailer = profile.fields.get("retailer")
    if retailer is None or "retailer" in profile.overrides:
        return None
    path = retailer.sources[0]
    groups: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        name = retailer_of(record, path)
        if name is not None:
            groups.setdefault(name, []).append(index)
    if not 2 <= len(groups) <= _MAX_RETAILERS:
        return None
    own: dict[str, FeedProfile] = {}
    claimed: set[int] = set()
    for name, indices in sorted(groups.items()):
        if len(indices) < _MIN_RETAILER:
            continue
        part = [records[i] for i in indices]
        key = f"{profile.shape}~r{key_fingerprint([name])[:6]}".lstrip("~")
        candidate = infer(part, key)
        if _reads(candidate, part, google_taxonomy) >= (
            _reads(profile, part, google_taxonomy) + _BETTER
        ):
            own[key] = replace(candidate, segment=(path, (name,)))
            claimed.update(indices)
    if not own:
        return None
    rest = [record for i, record in enumerate(records) if i not in claimed]
    default = infer(rest, profile.shape) if len(rest) >= _MIN_SEGMENT else profile
    return {profile.shape: default, **own}
