"""The model store: ``<base>/<name>/<version>/`` in TF Serving's layout, with a card per version.

Versions are immutable: :func:`export_version` writes a new one under ``.<N>.partial`` and renames
it into place, so a watcher (:func:`available_versions`) never sees a half-written version.

Model cards say what a model version predicts (class ids and paths).

Every exported version has ``model_card.json`` beside its ``saved_model.pb``. Outputs of a call are
interpreted with the card of the version that answered (``ModelOutput.version``), so a hot swap
never pairs one version's probabilities with another version's classes. Workers that call TF
Serving mount the same model store read-only to read the cards.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prodcat.core.errors import ModelNotFoundError, ModelStoreError

CARD = "model_card.json"
MODELS_CONFIG = "models.config"


def available_versions(model_dir: Path) -> list[int]:
    """Complete versions under ``model_dir``, ascending (``.N.partial`` exports are ignored)."""
    if not model_dir.is_dir():
        return []
    return sorted(
        int(p.name)
        for p in model_dir.iterdir()
        if p.name.isdigit() and (p / "saved_model.pb").is_file()
    )


def next_version(model_dir: Path) -> int:
    """1 + the highest numeric version directory under ``model_dir`` (TF Serving's convention)."""
    versions = [int(p.name) for p in model_dir.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def write_models_config(base_dir: Path, serving_base: str = "/models") -> Path:
    """TF Serving's model config listing every model under ``base_dir`` (latest 2 versions)."""
    entries = []
    for model_dir in sorted(
        p
        for p in base_dir.iterdir()
        if p.is_dir() and any(v.is_dir() and v.name.isdigit() for v in p.iterdir())
    ):
        entries.append(
            "  config {\n"
            f'    name: "{model_dir.name}"\n'
            f'    base_path: "{serving_base}/{model_dir.name}"\n'
            '    model_platform: "tensorflow"\n'
            "    model_version_policy { latest { num_versions: 2 } }\n"
            "  }\n"
        )
    path = base_dir / MODELS_CONFIG
    path.write_text("model_config_list {\n" + "".join(entries) + "}\n", encoding="utf-8")
    return path


def load_card(version_dir: Path) -> dict[str, Any]:
    """The card of one version directory, as written."""
    card: dict[str, Any] = json.loads((version_dir / CARD).read_text(encoding="utf-8"))
    return card


def export_version(
    base_dir: Path,
    name: str,
    write: Callable[[Path], None],
    card: Mapping[str, Any],
    *,
    version: int | None = None,
) -> Path:
    """Write a new immutable version of model ``name``; returns its directory.

    ``write(tmp)`` writes the SavedModel (and any side files) into a hidden ``.<N>.partial``
    directory; the card (``name``, ``version``, ``exported_at`` first, then ``card``) is added and
    the directory renamed into place atomically, then ``models.config`` is rewritten. An existing
    version is never overwritten (:class:`ModelStoreError`).
    """
    model_dir = base_dir / name
    model_dir.mkdir(parents=True, exist_ok=True)
    version = version if version is not None else next_version(model_dir)
    target = model_dir / str(version)
    if target.exists():
        raise ModelStoreError(f"{target} exists; model versions are immutable")
    tmp = model_dir / f".{version}.partial"
    if tmp.exists():  # left over by an export that crashed
        shutil.rmtree(tmp)
    write(tmp)
    full_card = {"name": name, "version": version, "exported_at": int(time.time()), **card}
    (tmp / CARD).write_text(json.dumps(full_card, indent=2, ensure_ascii=False), encoding="utf-8")
    tmp.rename(target)  # atomic: a watcher never sees a half-written version
    write_models_config(base_dir)
    return target


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
    #: per-node score thresholds for ``decision_target`` precision (``decisions`` in the card,
    #: chosen on the holdout; ``prodcat.training.decisions``), as sorted (id, threshold) pairs
    decision_thresholds: tuple[tuple[str, float], ...] = ()
    decision_target: float | None = None
    #: the temperature that calibrates the exclusive head's probabilities (``calibration``)
    temperature: float | None = None

    @classmethod
    def from_dict(cls, card: Mapping[str, Any]) -> ClassifierCard:
        classes = card.get("classes") or []
        nodes = card.get("rule_based_nodes") or []
        # Cards written before rule-based node paths were recorded hold bare ids.
        nodes = [node if isinstance(node, Mapping) else {"id": node, "path": ""} for node in nodes]
        decisions = card.get("decisions") or {}
        calibration = card.get("calibration") or {}
        return cls(
            name=str(card["name"]),
            version=int(card["version"]),
            class_ids=tuple(str(c["id"]) for c in classes),
            class_paths=tuple(_split(str(c["path"])) for c in classes),
            rule_ids=tuple(str(n["id"]) for n in nodes),
            rule_paths=tuple(_split(str(n.get("path", ""))) for n in nodes),
            decision_thresholds=tuple(
                sorted((str(k), float(v)) for k, v in (decisions.get("thresholds") or {}).items())
            ),
            decision_target=(
                float(decisions["target"]) if decisions.get("target") is not None else None
            ),
            temperature=(
                float(calibration["temperature"])
                if calibration.get("temperature") is not None
                else None
            ),
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
