"""The Google product taxonomy as an id -> path mapping (``google_product_taxonomy*.txt``)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["load_google_taxonomy", "parse_google_taxonomy"]


def parse_google_taxonomy(text: str) -> dict[int, list[str]]:
    """``{id: [level, ...]}`` from the lines ``"ID - A > B > C"`` (comment lines skipped)."""
    taxonomy: dict[int, list[str]] = {}
    for line in text.splitlines():
        number, sep, path = line.partition(" - ")
        if sep and number.strip().isdigit():
            taxonomy[int(number)] = [level.strip() for level in path.split(" > ") if level.strip()]
    return taxonomy


def load_google_taxonomy(path: Path) -> dict[int, list[str]]:
    """:func:`parse_google_taxonomy` of a file."""
    return parse_google_taxonomy(path.read_text(encoding="utf-8"))
