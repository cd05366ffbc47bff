"""A raw feed file as labelled training data: what ``prodcat train|baseline|experiment --data`` read.

The file is read and normalised exactly as ``prodcat feeds normalize`` does (a profile inferred from
its first records, :func:`prodcat.streams.feeds.commands.profiled_events`); each record becomes its
``Product`` or ``None`` (a dead letter), so record ``i`` stays row ``i`` of a truth file. Labels and
examples are then made by :func:`prodcat.training.data_files.labelled_products`.

A label field that is not a ``Product`` field is read from the raw record as a source path (``tags``,
``classification.productTypeName``). Whatever the label's source, the model inputs the profile reads
from the same source fields are left empty: with labels from a truth file or ``category_path``,
the inputs that share a source with the profile's category; with a raw label field, those that read
that field.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from prodcat.core.settings import Settings
from prodcat.streams.exceptions import NormalizationError
from prodcat.streams.feeds.commands import feed_name, normalize_event, profiled_events
from prodcat.streams.feeds.events import parse_event
from prodcat.streams.feeds.flatten import getter, parse_path
from prodcat.streams.feeds.profile import FeedProfile
from prodcat.training.data_files import (
    DEFAULT_LABEL_FIELD,
    LabelledData,
    Resolver,
    label_path,
    labelled_products,
    load_data,
    read_truth,
    sniff_kind,
)
from prodcat.training.dataset import MODEL_INPUT_FIELDS

__all__ = ["load_training_data", "shared_inputs"]

logger = logging.getLogger(__name__)


def _overlap(a: str, b: str) -> bool:
    """Whether two source paths read the same field (one is the other or holds it)."""
    steps_a, steps_b = parse_path(a), parse_path(b)
    n = min(len(steps_a), len(steps_b))
    return n > 0 and steps_a[:n] == steps_b[:n]


def shared_inputs(profiles: Iterable[FeedProfile], label_sources: Sequence[str]) -> list[str]:
    """The model inputs (title, brand, description) some profile reads from a label source."""
    hidden: list[str] = []
    for profile in profiles:
        for name in MODEL_INPUT_FIELDS:
            source = profile.get(name)
            if source is None or name in hidden:
                continue
            if any(_overlap(s, label) for s in source.sources for label in label_sources):
                hidden.append(name)
    return hidden


def _is_product_field(name: str, products: Sequence[dict[str, Any] | None]) -> bool:
    if name.startswith("attributes.") or name == DEFAULT_LABEL_FIELD:
        return True
    return any(product is not None and name in product for product in products[:100])


def load_training_data(
    settings: Settings,
    path: Path,
    *,
    truth: Path | None = None,
    label_field: str | None = None,
    resolve: Resolver | None = None,
    feed: str | None = None,
    sample: int | None = None,
    format: str | None = None,
    encoding: str | None = None,
) -> LabelledData:
    """Labelled examples of ``path``: raw feed records, normalised products, or a snapshot."""
    kind = sniff_kind(path)
    if kind != "raw":
        return load_data(path, truth=truth, label_field=label_field, resolve=resolve, kind=kind)
    products: list[dict[str, Any] | None] = []
    raw_labels: list[tuple[str, ...] | None] = []
    seen_at_ms = time.time_ns() // 1_000_000
    name = feed_name(str(path), feed)
    with profiled_events(
        settings, path, feed=name, sample=sample, format=format, encoding=encoding
    ) as opened:
        profiles = list(opened.profiles)
        read_label: Callable[[Mapping[str, Any]], Any] | bool | None = None
        for event in opened.events:
            result = normalize_event(
                event,
                profiles,
                feed=name,
                seen_at_ms=seen_at_ms,
                google_taxonomy=opened.taxonomy,
            )
            products.append(None if "dead_letter" in result else dict(result))
            if label_field is not None and read_label is None:
                read_label = (
                    False if _is_product_field(label_field, products) else getter(label_field)
                )
            if callable(read_label):
                try:
                    raw_labels.append(label_path(read_label(parse_event(event.value))))
                except NormalizationError:
                    raw_labels.append(None)
    if callable(read_label) and label_field is not None:
        withheld = shared_inputs(profiles, [label_field])
        return labelled_products(
            products,
            source=str(path),
            kind=kind,
            labels=raw_labels,
            labels_from=f"raw field {label_field}",
            withheld=withheld,
        )
    category = [s for p in profiles if (c := p.get("category")) is not None for s in c.sources]
    withheld = (
        shared_inputs(profiles, category) if label_field in (None, DEFAULT_LABEL_FIELD) else []
    )
    if withheld:
        logger.info("inputs read from the label's source field, left empty: %s", withheld)
    return labelled_products(
        products,
        source=str(path),
        kind=kind,
        truth=read_truth(truth) if truth is not None else None,
        label_field=label_field,
        withheld=withheld,
    )
