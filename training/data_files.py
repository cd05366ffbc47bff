"""Labelled training data from files: what ``prodcat train|baseline|experiment --data FILE`` read.

Kinds of ``FILE`` (:func:`sniff_kind` tells them apart from the first JSON line):

* ``products``: JSON lines of ``Product`` records, e.g. ``prodcat feeds normalize`` output; a
  ``{"dead_letter": ...}`` line keeps its row number but gives no example;
* ``snapshot``: ``prodcat labels snapshot`` output (:func:`prodcat.training.labels.write_snapshot`);
* ``raw``: anything else ``prodcat publish`` reads (CSV/TSV, JSON, JSON lines, XML, xlsx). Training
  never reads raw feeds: the streams layer normalises them through an inferred profile and hands
  the products (``None`` for a dead letter, so row numbers stay aligned) to
  :func:`labelled_products` (``prodcat.streams.feeds.training_data``).

Labels come from one of:

* a truth file: JSON lines ``{"row": i, "path": [level1, ...]}``, ``row`` the 0-based record number
  in ``FILE`` (:func:`read_truth`);
* a field of the product (default ``category_path``; any ``Product`` field, or ``attributes.KEY``):
  a list is the levels, a string with ``>`` is split on it, another value is a one-level path;
* the snapshot's exclusive label: a category id, resolved to its path by the product's own
  ``category_path`` (the id of one of its prefixes), else by ``resolve`` (a vocabulary or
  taxonomy), else kept as an opaque one-level label.

**The model never reads the field that holds the label.** ``category_text`` is always empty (as
the classify agent sends it, :mod:`prodcat.training.inputs`); a label taken from ``brand`` or
``description`` blanks that input too; the title is the model's main input and cannot be the label.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from prodcat.core.ids import path_id
from prodcat.training.dataset import MODEL_INPUT_FIELDS, Example
from prodcat.training.exceptions import DatasetError
from prodcat.training.labels import LabelledProduct

__all__ = [
    "DATA_KINDS",
    "DEFAULT_LABEL_FIELD",
    "LabelledData",
    "Resolver",
    "default_level",
    "example_of",
    "label_path",
    "labelled_products",
    "load_data",
    "read_products",
    "read_snapshot_items",
    "read_truth",
    "sniff_kind",
    "withheld_inputs",
]

logger = logging.getLogger(__name__)

DATA_KINDS: Final = ("raw", "products", "snapshot")
DEFAULT_LABEL_FIELD: Final = "category_path"
_PRODUCT_KEYS: Final = frozenset({"product_id", "title", "content_hash"})
_SNAPSHOT_KEYS: Final = frozenset({"product", "exclusive"})

#: A category id -> its path (``A > B``), or None when unknown.
Resolver = Callable[[str], str | None]


@dataclass(frozen=True)
class LabelledData:
    """Labelled examples from one file, and how they were made (for the model card)."""

    source: str
    kind: str
    labels_from: str
    examples: tuple[Example, ...]
    rows: int
    withheld: tuple[str, ...] = ()
    unlabelled: int = 0
    no_product: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def describe(self) -> dict[str, Any]:
        return {
            "dataset": self.source,
            "kind": self.kind,
            "labels_from": self.labels_from,
            "rows": self.rows,
            "labelled": len(self.examples),
            "unlabelled": self.unlabelled,
            "dead_letters": self.no_product,
            "inputs_withheld": list(self.withheld),
        }

    def summary(self) -> str:
        return (
            f"{self.source} ({self.kind}, labels from {self.labels_from}): {self.rows} rows, "
            f"{len(self.examples)} labelled, {self.unlabelled} without a label, "
            f"{self.no_product} not a product"
            + (f"; inputs left empty: {', '.join(self.withheld)}" if self.withheld else "")
        )


# --- kinds and readers --------------------------------------------------------------------------


def _first_object(path: Path) -> dict[str, Any] | None:
    """The first non-empty line of ``path`` as a JSON object, or None when it is not one."""
    try:
        with path.open("rb") as handle:
            for raw in handle:
                line = raw.strip()
                if not line:
                    continue
                try:
                    value = json.loads(line)
                except (ValueError, UnicodeDecodeError):
                    return None
                return value if isinstance(value, dict) else None
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    return None


def sniff_kind(path: Path) -> str:
    """``products``, ``snapshot`` or ``raw`` (see the module docstring)."""
    if not path.is_file():
        raise DatasetError(f"--data {path}: no such file")
    first = _first_object(path)
    if first is None:
        return "raw"
    if first.keys() >= _SNAPSHOT_KEYS and isinstance(first.get("product"), dict):
        return "snapshot"
    if ("dead_letter" in first and len(first) == 1) or first.keys() >= _PRODUCT_KEYS:
        return "products"
    return "raw"


def json_lines(path: Path) -> Iterable[tuple[int, Any]]:
    """(line number, value) of every non-empty line of a JSON-lines file."""
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        yield number, json.loads(line)
                    except ValueError as exc:
                        raise DatasetError(f"{path}:{number}: not JSON: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc


def read_products(path: Path) -> list[dict[str, Any] | None]:
    """Product records, one per line in file order; ``None`` for a dead-letter line."""
    products: list[dict[str, Any] | None] = []
    for number, value in json_lines(path):
        if isinstance(value, dict) and "dead_letter" in value:
            products.append(None)
        elif isinstance(value, dict) and "title" in value:
            products.append(value)
        else:
            raise DatasetError(f"{path}:{number}: not a Product record (no title)")
    return products


def read_snapshot_items(path: Path) -> list[LabelledProduct]:
    """The lines of a labels snapshot."""
    items: list[LabelledProduct] = []
    for number, value in json_lines(path):
        if not isinstance(value, dict) or not isinstance(value.get("product"), dict):
            raise DatasetError(f"{path}:{number}: not a snapshot line (no product)")
        items.append(
            LabelledProduct(
                value["product"], value.get("exclusive"), tuple(value.get("rule_based") or ())
            )
        )
    return items


def read_truth(path: Path) -> dict[int, tuple[str, ...]]:
    """A truth file: row number -> path (levels stripped, empty levels dropped)."""
    truth: dict[int, tuple[str, ...]] = {}
    for number, value in json_lines(path):
        row = value.get("row") if isinstance(value, dict) else None
        levels = value.get("path") if isinstance(value, dict) else None
        if not isinstance(row, int) or isinstance(row, bool) or not isinstance(levels, list):
            raise DatasetError(f'{path}:{number}: expected {{"row": N, "path": [...]}}')
        truth[row] = tuple(str(level).strip() for level in levels if str(level).strip())
    return truth


# --- labels and examples ------------------------------------------------------------------------


def _field_value(product: Mapping[str, Any], name: str) -> Any:
    if name.startswith("attributes."):
        attributes = product.get("attributes") or {}
        return attributes.get(name.removeprefix("attributes.")) if attributes else None
    return product.get(name)


def label_path(value: Any) -> tuple[str, ...]:
    """A label value as a path: a list is its levels, ``A > B`` is split, a scalar is one level."""
    if value is None:
        return ()
    if isinstance(value, list | tuple):
        levels = [str(v) for v in value]
    elif isinstance(value, str) and ">" in value:
        levels = value.split(">")
    else:
        levels = [str(value)]
    return tuple(" ".join(level.split()) for level in levels if level.strip())


def withheld_inputs(label_field: str | None) -> tuple[str, ...]:
    """The model inputs left empty because ``label_field`` holds the label."""
    if label_field == "title":
        raise DatasetError(
            "--label-field title: the title is the model's main input and cannot be the label"
        )
    return tuple(name for name in MODEL_INPUT_FIELDS if name == label_field)


def example_of(
    product: Mapping[str, Any], path: Sequence[str], *, row: int, withheld: Sequence[str] = ()
) -> Example:
    """One example: the product's inputs (``withheld`` ones and the category text left empty)."""

    def text(name: str) -> str | None:
        value = product.get(name)
        return None if name in withheld or value is None else str(value)

    levels = tuple(path)
    return Example(
        product_id=str(product.get("product_id") or f"row-{row}"),
        title=text("title") or "",
        brand=text("brand"),
        category_text="",
        raw_path=levels,
        path=levels,
        description=text("description"),
    )


def labelled_products(
    products: Sequence[Mapping[str, Any] | None],
    *,
    source: str,
    kind: str,
    truth: Mapping[int, Sequence[str]] | None = None,
    label_field: str | None = None,
    labels: Sequence[Sequence[str] | None] | None = None,
    labels_from: str | None = None,
    withheld: Sequence[str] = (),
) -> LabelledData:
    """Examples of ``products`` (row ``i`` = ``products[i]``; ``None`` = not a product).

    The label of row ``i`` is ``labels[i]`` when given (the caller read it, e.g. from a raw key),
    else ``truth[i]``, else the product's ``label_field`` (default ``category_path``)."""
    if truth is not None and label_field is not None:
        raise DatasetError("give either a truth file or a label field, not both")
    if labels is not None and len(labels) != len(products):
        raise DatasetError(f"{len(labels)} labels for {len(products)} rows")
    name = label_field or DEFAULT_LABEL_FIELD
    hidden = tuple(dict.fromkeys([*withheld, *withheld_inputs(name if truth is None else None)]))
    if truth is not None:
        beyond = [row for row in truth if not 0 <= row < len(products)]
        if beyond:
            raise DatasetError(
                f"the truth file names rows the data lacks (e.g. row {beyond[0]}; "
                f"the data has {len(products)} rows): is it the truth of this file?"
            )
    examples: list[Example] = []
    unlabelled = no_product = 0
    for row, product in enumerate(products):
        if product is None:
            no_product += 1
            continue
        if labels is not None:
            path: Sequence[str] = labels[row] or ()
        elif truth is not None:
            path = truth.get(row, ())
        else:
            path = label_path(_field_value(product, name))
        if not path:
            unlabelled += 1
            continue
        examples.append(example_of(product, path, row=row, withheld=hidden))
    if labels_from is None:
        labels_from = "truth file" if truth is not None else f"field {name}"
    data = LabelledData(
        source, kind, labels_from, tuple(examples), len(products), hidden, unlabelled, no_product
    )
    logger.info("%s", data.summary())
    return data


def _snapshot_path(item: LabelledProduct, resolve: Resolver | None) -> tuple[str, ...]:
    category = item.exclusive
    if not category:
        return ()
    own = label_path(item.product.get("category_path"))
    for depth in range(len(own), 0, -1):
        if path_id(own[:depth]) == category:
            return own[:depth]
    resolved = resolve(category) if resolve is not None else None
    if resolved:
        return label_path(resolved)
    return (category,)


def load_data(
    path: Path,
    *,
    truth: Path | None = None,
    label_field: str | None = None,
    resolve: Resolver | None = None,
    kind: str | None = None,
) -> LabelledData:
    """Labelled examples of a ``products`` or ``snapshot`` file (raw feeds: see the docstring)."""
    kind = kind or sniff_kind(path)
    truth_rows = read_truth(truth) if truth is not None else None
    if kind == "products":
        return labelled_products(
            read_products(path),
            source=str(path),
            kind=kind,
            truth=truth_rows,
            label_field=label_field,
        )
    if kind == "snapshot":
        items = read_snapshot_items(path)
        products = [item.product for item in items]
        if truth_rows is not None or label_field is not None:
            return labelled_products(
                products, source=str(path), kind=kind, truth=truth_rows, label_field=label_field
            )
        return labelled_products(
            products,
            source=str(path),
            kind=kind,
            labels=[_snapshot_path(item, resolve) for item in items],
            labels_from="snapshot exclusive labels",
            withheld=(),
        )
    raise DatasetError(
        f"{path} is a raw feed file: it is normalised by the streams layer "
        "(`prodcat train --data` does it; or run `prodcat feeds normalize` first)"
    )


def default_level(data: LabelledData, deepest: int = 3) -> int:
    """The deepest level (at most ``deepest``) most labelled examples reach."""
    if not data.examples:
        raise DatasetError(f"{data.source}: no labelled examples ({data.summary()})")
    return level_of(data.examples, deepest)


def level_of(examples: Sequence[Example], deepest: int = 3) -> int:
    """The deepest level (at most ``deepest``) most of ``examples`` reach (they are not empty)."""
    depths = sorted(len(example.raw_path) for example in examples)
    return max(1, min(deepest, depths[len(depths) // 2]))
