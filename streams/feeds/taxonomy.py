"""The Google product taxonomy as an id -> path mapping (``google_product_taxonomy*.txt``)."""

from __future__ import annotations

from pathlib import Path

from prodcat.core.errors import ConfigError

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


def configured_google_taxonomy(
    explicit: Path | None, data_dir: Path
) -> dict[int, list[str]] | None:
    """The Google taxonomy of the settings: ``explicit`` when set (it must exist), else the newest
    ``taxonomy/google_product_taxonomy*.txt`` under ``data_dir``, else None (numeric category ids
    then stay unmapped)."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(
                f"PRODCAT_FEEDS__GOOGLE_TAXONOMY={explicit} is not a file; point it at the Google "
                "product taxonomy text file (with ids) or unset it"
            )
        return load_google_taxonomy(explicit)
    found = sorted((data_dir / "taxonomy").glob("google_product_taxonomy*.txt"))
    return load_google_taxonomy(found[-1]) if found else None
