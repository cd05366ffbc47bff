"""A served classifier remapped onto a changed taxonomy, without retraining.

After a rename or a move the model's output columns mean the same products; only their ids and
paths change. After a merge two columns become one class: its probability is the sum of theirs
(exclusive head: the softmax of the merged classes' logits, exactly) and its rule-based score
the larger of theirs. :func:`remap_classifier` writes a new version of the model whose
``serving_default`` signature wraps the current one's and folds its outputs with a fixed 0/1
matrix, and whose card names the new classes; the weights are the current version's. The
backends serve it like any other version (hot swap), TF Serving included.

The Keras model (``model.keras``) is copied along with, in the card, the class of each of its
output columns (``columns``), so the next training can warm-start from it
(:mod:`prodcat.training.warm_start`). What it does not carry over: the per-node decision
thresholds of merged classes (the target's are kept) and the drift reference (the drift agent
has none for the new version until the next retrain).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prodcat.core.model_store import (
    CARD,
    available_versions,
    export_version,
    load_card,
)
from prodcat.training.exceptions import TrainingError
from prodcat.training.models import TEXT_FIELDS
from prodcat.training.taxonomy import CategoryTree
from prodcat.training.warm_start import head_columns

__all__ = ["Remap", "plan_remap", "remap_classifier"]


class Remap:
    """Old columns → new classes of one head: ``columns[j]`` is the new class of old column j."""

    def __init__(self, old_ids: Sequence[str], new_ids: Sequence[str], columns: Sequence[int]):
        self.old_ids, self.new_ids, self.columns = list(old_ids), list(new_ids), list(columns)

    @property
    def identity(self) -> bool:
        return self.old_ids == self.new_ids

    def matrix(self) -> np.ndarray[Any, Any]:
        out = np.zeros((len(self.old_ids), len(self.new_ids)), dtype=np.float32)
        out[np.arange(len(self.old_ids)), self.columns] = 1.0
        return out


def _head(
    entries: Sequence[Mapping[str, Any]],
    ids: Mapping[str, str],
    tree: CategoryTree,
    moved: frozenset[str],
) -> tuple[Remap, list[dict[str, Any]]]:
    """(remap, new card entries) of one head's card entries ({id, path}); an entry keeps its
    path unless its node was re-identified or moved."""
    new_entries: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    columns: list[int] = []
    for entry in entries:
        old = str(entry["id"])
        new = ids.get(old, old)
        node = tree.get(new) if new != old or new in moved else None
        path = " > ".join(node.path) if node is not None else str(entry.get("path", ""))
        if new not in index:
            index[new] = len(new_entries)
            new_entries.append({**entry, "id": new, "path": path})
        columns.append(index[new])
    return Remap([str(e["id"]) for e in entries], [e["id"] for e in new_entries], columns), (
        new_entries
    )


def plan_remap(
    card: Mapping[str, Any],
    ids: Mapping[str, str],
    tree: CategoryTree,
    moved: frozenset[str] = frozenset(),
) -> tuple[Remap, Remap, dict[str, Any]]:
    """The remaps of both heads and the new card (classes and nodes renamed, merged)."""
    classes, new_classes = _head(card.get("classes") or [], ids, tree, moved)
    nodes_in = [n if isinstance(n, Mapping) else {"id": n, "path": ""}
                for n in card.get("rule_based_nodes") or []]  # fmt: skip
    nodes, new_nodes = _head(nodes_in, ids, tree, moved)
    new_card = {k: v for k, v in card.items() if k not in ("name", "version", "exported_at")}
    new_card["classes"], new_card["rule_based_nodes"] = new_classes, new_nodes
    decisions = card.get("decisions")
    if isinstance(decisions, Mapping) and decisions.get("thresholds"):
        kept = {ids.get(k, k): v for k, v in decisions["thresholds"].items() if k not in ids}
        kept.update({ids[k]: v for k, v in decisions["thresholds"].items()
                     if k in ids and ids[k] not in kept})  # fmt: skip
        new_card["decisions"] = {**decisions, "thresholds": kept}
    return classes, nodes, new_card


def remap_classifier(
    model_base: Path,
    name: str,
    ids: Mapping[str, str],
    tree: CategoryTree,
    *,
    moved: frozenset[str] = frozenset(),
    reason: str,
) -> tuple[Path, int] | None:
    """A new version of the newest version of ``name`` with its classes remapped through
    ``ids`` onto ``tree`` (``moved``: nodes whose path changed, their ids kept); None when
    nothing in its card changes."""
    import tensorflow as tf

    model_dir = model_base / name
    versions = available_versions(model_dir)
    if not versions:
        return None
    source = model_dir / str(versions[-1])
    card = load_card(source)
    classes, nodes, new_card = plan_remap(card, ids, tree, moved)
    unchanged = (
        classes.identity
        and nodes.identity
        and new_card["classes"] == card.get("classes")
        and new_card["rule_based_nodes"] == card.get("rule_based_nodes")
    )
    if unchanged:
        return None
    new_card["remapped_from"] = {"version": versions[-1], "reason": reason}
    # the class of each output column of the Keras model copied along (for warm starts)
    before = head_columns(card)
    new_card["columns"] = {head: [ids.get(c, c) for c in before[head]] for head in before}
    loaded = tf.saved_model.load(str(source))
    serve = loaded.signatures.get("serving_default")
    if serve is None:
        raise TrainingError(f"{source} has no serving_default signature")
    fold = tf.constant(classes.matrix())
    node_columns = tf.constant(nodes.columns, dtype=tf.int32)
    new_ids = tf.constant(classes.new_ids)
    k = min(int(serve.structured_outputs["top_k_ids"].shape[-1] or 5), len(classes.new_ids))
    n_nodes = len(nodes.new_ids)

    def remapped(title: Any, brand: Any, category_text: Any, description: Any) -> Any:
        out = serve(title=title, brand=brand, category_text=category_text,
                    description=description)  # fmt: skip
        probs = tf.matmul(out["exclusive_probs"], fold)
        top = tf.math.top_k(probs, k=k)
        rules = out["rule_based_probs"]
        if n_nodes:
            rules = tf.transpose(
                tf.math.unsorted_segment_max(tf.transpose(rules), node_columns, n_nodes)
            )
        return {
            "exclusive_probs": probs,
            "top_k_ids": tf.gather(new_ids, top.indices),
            "top_k_probs": top.values,
            "top_k_indices": top.indices,
            "rule_based_probs": rules,
        }

    module = tf.Module()
    module.inner = loaded  # tracked: the wrapped model's variables are saved with it
    module.serve = tf.function(
        remapped, input_signature=[tf.TensorSpec([None], tf.string, name=f) for f in TEXT_FIELDS]
    )

    def write(tmp: Path) -> None:
        tf.saved_model.save(module, str(tmp), signatures={"serving_default": module.serve})
        for extra in source.iterdir():  # side files other than the card and the SavedModel
            if extra.is_file() and extra.name not in (CARD, "saved_model.pb", "fingerprint.pb") \
                    and extra.name != "drift_reference.json":  # fmt: skip
                shutil.copy2(extra, tmp / extra.name)

    target = export_version(model_base, name, write, new_card)
    return target, int(target.name)
