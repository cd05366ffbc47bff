"""Model cards: what a model version predicts (class ids and paths), read from the model store.

Every exported version has ``model_card.json`` beside its ``saved_model.pb``. Outputs of a call are
interpreted with the card of the version that answered (``ModelOutput.version``), so a hot swap
never pairs one version's probabilities with another version's classes. Workers that call TF
Serving mount the same model store read-only to read the cards.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serving.exceptions import ModelNotFoundError

CARD = "model_card.json"


def _split(path: str) -> tuple[str, ...]:
    return tuple(level.strip() for level in path.split(" > ") if level.strip())


@dataclass(frozen=True)
class ClassifierCard:
    """The classes (exclusive head) and nodes (rule-based head) of one classifier version."""

    name: str
    version: int
    class_ids: tuple[str, ...]
    class_paths: tuple[tuple[str, ...], ...]
    rule_ids: tuple[str, ...]
    rule_paths: tuple[tuple[str, ...], ...]

    @classmethod
    def from_dict(cls, card: Mapping[str, Any]) -> ClassifierCard:
        classes = card.get("classes") or []
        nodes = card.get("rule_based_nodes") or []
        # Cards written before rule-based node paths were recorded hold bare ids.
        nodes = [node if isinstance(node, Mapping) else {"id": node, "path": ""} for node in nodes]
        return cls(
            name=str(card["name"]),
            version=int(card["version"]),
            class_ids=tuple(str(c["id"]) for c in classes),
            class_paths=tuple(_split(str(c["path"])) for c in classes),
            rule_ids=tuple(str(n["id"]) for n in nodes),
            rule_paths=tuple(_split(str(n.get("path", ""))) for n in nodes),
        )


class CardStore:
    """Reads and caches model cards from ``<model_base>/<name>/<version>/model_card.json``."""

    def __init__(self, model_base: Path) -> None:
        self.model_base = Path(model_base)
        self._cards: dict[tuple[str, int], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def card(self, name: str, version: int) -> dict[str, Any]:
        key = (name, version)
        with self._lock:
            cached = self._cards.get(key)
        if cached is not None:
            return cached
        path = self.model_base / name / str(version) / CARD
        try:
            card: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelNotFoundError(f"no readable model card at {path}: {exc}") from exc
        with self._lock:
            self._cards[key] = card
        return card

    def classifier(self, name: str, version: int) -> ClassifierCard:
        return ClassifierCard.from_dict(
            {**self.card(name, version), "name": name, "version": version}
        )
