"""Parsing label files for ``prodcat labels import FILE``: CSV or JSON lines, line by line.

* **CSV** (a header line): ``product_id`` and one of ``category_id`` / ``category_path`` /
  ``category`` (an id, or a path ``A > B > C`` resolved to its stable id); optional ``objective``
  (``exclusive`` by default; a rule-based row may list several categories separated by ``|``),
  ``annotator``.
* **JSON lines** (the first non-blank character is ``{``): one object of ``Label`` fields per line;
  ``source`` defaults to ``import`` and ``labelled_at`` to the import time.

Every data line yields an :class:`ImportLine` with its original bytes and either a validated label
or the :class:`~prodcat.training.labels.LabelError` that makes it a dead letter.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prodcat.schemas.records import Label
from prodcat.training.exceptions import TrainingError
from prodcat.training.labels import LabelError, Vocabulary, validate_label

__all__ = ["ImportLine", "parse_label_file"]

_CATEGORY_COLUMNS = ("category_id", "category_path", "category")
_LABEL_FIELDS = frozenset(
    {
        "product_id",
        "objective",
        "category_ids",
        "source",
        "annotator",
        "strategy",
        "score",
        "time_taken_ms",
        "model_version",
        "labelled_at",
    }
)


@dataclass(frozen=True, slots=True)
class ImportLine:
    """One data line of the file: its number, its bytes, and a label or why it has none."""

    number: int
    original: bytes
    label: Label | None
    error: LabelError | None


def parse_label_file(path: Path, vocabulary: Vocabulary, now_ms: int) -> Iterator[ImportLine]:
    """The data lines of a CSV or JSON-lines label file (see the module docstring)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TrainingError(f"cannot read label file {path}: {exc}") from exc
    first = data.lstrip()[:1]
    lines = _json_lines(data) if first == b"{" else _csv_lines(data)
    for number, original, fields in lines:
        try:
            if isinstance(fields, LabelError):
                raise fields
            label = validate_label(_label(fields, vocabulary, now_ms), vocabulary)
        except LabelError as exc:
            yield ImportLine(number, original, None, exc)
        else:
            yield ImportLine(number, original, label, None)


Parsed = tuple[int, bytes, "Mapping[str, Any] | LabelError"]


def _json_lines(data: bytes) -> Iterator[Parsed]:
    for number, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            yield number, raw, LabelError("malformed", f"line {number}: not JSON: {exc}")
            continue
        if not isinstance(value, dict):
            yield number, raw, LabelError("malformed", f"line {number}: not a JSON object")
            continue
        extra = sorted(set(value) - _LABEL_FIELDS)
        if extra:
            yield number, raw, LabelError("malformed", f"line {number}: unknown fields {extra}")
            continue
        yield number, raw, {**value, "_csv": False}


def _csv_lines(data: bytes) -> Iterator[Parsed]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TrainingError(f"label file is neither UTF-8 CSV nor JSON lines: {exc}") from exc
    raw_lines = text.splitlines(keepends=True)
    reader = csv.DictReader(io.StringIO(text))
    columns = reader.fieldnames or []
    if "product_id" not in columns or not any(c in columns for c in _CATEGORY_COLUMNS):
        raise TrainingError(
            f"CSV label file needs a product_id column and one of {_CATEGORY_COLUMNS}; "
            f"header is {columns}"
        )
    try:
        for row in reader:
            number = reader.line_num
            original = (
                raw_lines[number - 1].rstrip("\r\n").encode() if number <= len(raw_lines) else b""
            )
            if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                continue
            if None in row:  # more cells than header columns
                yield number, original, LabelError("malformed", f"line {number}: extra cells")
                continue
            yield number, original, {**row, "_csv": True}
    except csv.Error as exc:
        raise TrainingError(f"label file is not valid CSV: {exc}") from exc


def _label(fields: Mapping[str, Any], vocabulary: Vocabulary, now_ms: int) -> dict[str, Any]:
    if fields.get("_csv"):
        objective = (fields.get("objective") or "exclusive").strip()
        text = next((fields[c] for c in _CATEGORY_COLUMNS if (fields.get(c) or "").strip()), "")
        parts = text.split("|") if objective == "rule_based" else [text]
        return {
            "product_id": (fields.get("product_id") or "").strip(),
            "objective": objective,
            "category_ids": [vocabulary.resolve(p) for p in parts if p.strip()],
            "source": "import",
            "annotator": (fields.get("annotator") or "").strip() or None,
            "strategy": None,
            "score": None,
            "time_taken_ms": None,
            "model_version": None,
            "labelled_at": now_ms,
        }
    label = {k: v for k, v in fields.items() if k != "_csv"}
    ids = label.get("category_ids")
    if isinstance(ids, list):
        label["category_ids"] = [vocabulary.resolve(i) if isinstance(i, str) else i for i in ids]
    label.setdefault("source", "import")
    label.setdefault("labelled_at", now_ms)
    for name in ("annotator", "strategy", "score", "time_taken_ms", "model_version"):
        label.setdefault(name, None)
    return label
