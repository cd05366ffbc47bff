"""Category labels: their key, validation against the category vocabulary, and the training snapshot.

A ``Label`` (schemas/label.avsc) lives on the compacted ``labels`` topic under the key
``<product_id>/<objective>`` (:func:`label_key`), so a product has at most one live label per
objective: a relabel replaces the old one, a tombstone deletes it.

**Vocabulary.** Category ids are validated against the newest *serving* classifier's model card
(:func:`load_vocabulary`): its exclusive classes and its rule-based nodes (the category tree's
nodes). An exclusive label carries exactly one id that is a known class *or* a tree node (a node
that is not yet a class is how a new class enters: the next candidate is trained with it); a
rule-based label carries one or more ids, all tree nodes (their ancestors are implied, see
:meth:`Vocabulary.with_ancestors`). The serving card is the one place that knows both the classes
the system predicts and the tree they come from, and it moves with promotions, so the vocabulary
never disagrees with what the classify agent emits. Before any model is served the vocabulary is
*open*: ids are only checked to be well-formed (there is nothing to compare them with).

When a taxonomy is configured (``prodcat taxonomy import``; the caller passes the tree, see
:mod:`prodcat.streams.taxonomy_store`), its nodes are the vocabulary's nodes instead of the card's,
even before any model is served (the served card's classes stay known: the classifier predicts
them). A rule-based label then always names nodes of the configured tree.

**Snapshot.** :func:`join_snapshot` joins the live labels with the live products (both compacted
topics, latest value per key) on ``product_id``: one :class:`LabelledProduct` per product with at
least one valid label and a known product. Labels that are invalid or whose product is unknown are
counted, never silently lost.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Final, cast

from prodcat.core.ids import label_key, path_id
from prodcat.core.model_store import CARD, ClassifierCard
from prodcat.schemas.records import Label
from prodcat.training.exceptions import TrainingError
from prodcat.training.taxonomy import CategoryTree

__all__ = [
    "OBJECTIVES",
    "SOURCES",
    "LabelError",
    "LabelledProduct",
    "SnapshotCounts",
    "Vocabulary",
    "free_version",
    "in_holdout",
    "join_snapshot",
    "load_vocabulary",
    "newest_version",
    "read_snapshot",
    "validate_label",
    "write_snapshot",
]

OBJECTIVES: Final = ("exclusive", "rule_based")
SOURCES: Final = ("human", "rules", "import", "mapping", "unknown")
_WELL_FORMED_ID: Final = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


class LabelError(TrainingError):
    """A label that cannot be used; ``kind`` is the dead-letter reason (``DeadLetter.error_kind``).

    Kinds: ``malformed`` (not a Label: bad JSON/CSV, wrong field types), ``no_product_id``,
    ``bad_objective``, ``no_category``, ``too_many_categories`` (exclusive with more than one id),
    ``unknown_category``, ``key_mismatch`` (the Kafka key is not the label's product + objective).
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message

    def __reduce__(self) -> tuple[type[LabelError], tuple[str, str]]:
        return (type(self), (self.kind, self.message))


def _path_text(levels: Iterable[str]) -> str:
    return " > ".join(levels)


@dataclass(frozen=True)
class Vocabulary:
    """Known category ids: the serving classifier's classes and tree nodes, with their paths.

    ``version`` is the classifier version the vocabulary comes from, ``taxonomy`` the version of
    the configured tree whose nodes it holds; when both are None no model is served and no
    taxonomy is configured, and the vocabulary is open (any well-formed id is accepted).
    ``parents`` (tree vocabularies) gives each node's parent, for ids that are not path ids.
    """

    version: int | None = None
    classes: Mapping[str, str] = field(default_factory=dict)
    nodes: Mapping[str, str] = field(default_factory=dict)
    taxonomy: str | None = None
    parents: Mapping[str, str | None] = field(default_factory=dict)

    @classmethod
    def from_card(cls, card: ClassifierCard) -> Vocabulary:
        return cls(
            card.version,
            {i: _path_text(p) for i, p in zip(card.class_ids, card.class_paths, strict=True)},
            {i: _path_text(p) for i, p in zip(card.rule_ids, card.rule_paths, strict=True)},
        )

    @classmethod
    def from_tree(cls, tree: CategoryTree, card: ClassifierCard | None = None) -> Vocabulary:
        """The tree's nodes, and the served card's classes (what the classifier predicts)."""
        classes = (
            {i: _path_text(p) for i, p in zip(card.class_ids, card.class_paths, strict=True)}
            if card is not None
            else {}
        )
        return cls(
            card.version if card is not None else None,
            classes,
            {node.id: _path_text(node.path) for node in tree},
            tree.version,
            {node.id: node.parent for node in tree},
        )

    @property
    def open(self) -> bool:
        return self.version is None and self.taxonomy is None

    @property
    def origin(self) -> str:
        """Where the known ids come from, for messages."""
        if self.taxonomy is not None:
            return f"taxonomy {self.taxonomy}"
        return f"classifier v{self.version}" if self.version is not None else "well-formed ids"

    def knows(self, category_id: str, *, exclusive: bool) -> bool:
        if self.open:
            return bool(_WELL_FORMED_ID.match(category_id))
        return category_id in self.nodes or (exclusive and category_id in self.classes)

    def path(self, category_id: str) -> str:
        """The category's path (``A > B > C``); the id itself when unknown (open vocabulary)."""
        return self.classes.get(category_id) or self.nodes.get(category_id) or category_id

    def levels(self, category_id: str) -> tuple[str, ...]:
        """The levels of a known category's path; ``()`` when the id is not known."""
        path = self.classes.get(category_id) or self.nodes.get(category_id) or ""
        return tuple(level.strip() for level in path.split(" > ") if level.strip())

    def resolve(self, text: str) -> str:
        """An id for ``text``: a known id as is, a known path (``A > B``) as its node's id (a
        taxonomy's own id, e.g. Google's ``421``), another path as its stable path id."""
        text = text.strip()
        if text in self.classes or text in self.nodes or ">" not in text:
            return text
        levels = [level.strip() for level in text.split(">") if level.strip()]
        return self._ids_by_path.get(_path_text(levels).casefold()) or path_id(levels)

    @cached_property
    def _ids_by_path(self) -> dict[str, str]:
        """Known ids by their path text (case-folded); tree nodes win over classes."""
        return {
            path.casefold(): category_id
            for category_id, path in (*self.classes.items(), *self.nodes.items())
        }

    def with_ancestors(self, node_ids: Iterable[str]) -> set[str]:
        """The nodes and every known ancestor (a positive rule-based label implies them)."""
        out: set[str] = set()
        for node_id in node_ids:
            out.add(node_id)
            if self.parents:
                parent = self.parents.get(node_id)
                while parent is not None and parent not in out:
                    out.add(parent)
                    parent = self.parents.get(parent)
                continue
            levels = [lv.strip() for lv in self.nodes.get(node_id, "").split(" > ") if lv.strip()]
            for depth in range(1, len(levels)):
                ancestor = path_id(levels[:depth])
                if ancestor in self.nodes:
                    out.add(ancestor)
        return out


def newest_version(model_base: Path, name: str) -> int | None:
    """The newest complete version (SavedModel and card) of ``name`` in the model store."""
    model_dir = Path(model_base) / name
    if not model_dir.is_dir():
        return None
    versions = [
        int(p.name)
        for p in model_dir.iterdir()
        if p.name.isdigit() and (p / "saved_model.pb").is_file() and (p / CARD).is_file()
    ]
    return max(versions, default=None)


def free_version(model_base: Path, name: str, work_dir: Path) -> int:
    """A version number used neither in the model store, nor by a candidate, nor by a job under
    ``work_dir``.

    Candidates live in ``<work_dir>/candidates/<name>/<version>/``; a rejected one is kept there,
    so the next job's candidate gets a new number and every ``ModelEvent`` version is unique. A job
    folder (``<work_dir>/jobs/v<version>/``) takes its number from the moment it is launched, so a
    trigger restarted while a job of it still runs never launches a second job with that number.
    """
    used = [
        int(p.name)
        for folder in (Path(model_base) / name, Path(work_dir) / "candidates" / name)
        if folder.is_dir()
        for p in folder.iterdir()
        if p.name.isdigit()
    ]
    jobs = Path(work_dir) / "jobs"
    if jobs.is_dir():
        used += [
            int(p.name[1:]) for p in jobs.iterdir() if p.name[:1] == "v" and p.name[1:].isdigit()
        ]
    return max(used, default=0) + 1


def load_vocabulary(
    model_base: Path, name: str, taxonomy: CategoryTree | None = None
) -> Vocabulary:
    """The vocabulary of the configured ``taxonomy`` when one is given (with the classes of the
    newest served version of ``name`` that are nodes of it), else of the newest complete version
    of ``name`` (open when there is none)."""
    version = newest_version(model_base, name)
    card: ClassifierCard | None = None
    if version is not None:
        path = Path(model_base) / name / str(version) / CARD
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            card = ClassifierCard.from_dict({**raw, "name": name, "version": version})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TrainingError(f"cannot read the model card {path}: {exc}") from exc
    if taxonomy is not None:
        return Vocabulary.from_tree(taxonomy, card)
    return Vocabulary.from_card(card) if card is not None else Vocabulary()


def validate_label(
    label: Mapping[str, Any], vocabulary: Vocabulary, key: bytes | None = None
) -> Label:
    """The label with its ids de-duplicated (order kept), or a :class:`LabelError`.

    Checks what makes a label usable (product id, objective, category ids); the serde checks the
    other fields of the ``Label`` record when it is encoded."""
    product_id = label.get("product_id")
    if not isinstance(product_id, str) or not product_id.strip():
        raise LabelError("no_product_id", "the label has no product_id")
    objective = label.get("objective")
    if objective not in OBJECTIVES:
        raise LabelError("bad_objective", f"objective {objective!r} is not one of {OBJECTIVES}")
    if key is not None and key != label_key(product_id, objective):
        raise LabelError(
            "key_mismatch",
            f"key {key[:120]!r} is not {label_key(product_id, objective)!r}",
        )
    raw_ids = label.get("category_ids")
    if not isinstance(raw_ids, list | tuple) or not all(isinstance(i, str) for i in raw_ids):
        raise LabelError("malformed", "category_ids must be a list of strings")
    ids = list(dict.fromkeys(i.strip() for i in raw_ids if i.strip()))
    if not ids:
        raise LabelError("no_category", f"{objective} label without a category id")
    exclusive = objective == "exclusive"
    if exclusive and len(ids) > 1:
        raise LabelError("too_many_categories", f"exclusive label with {len(ids)} ids: {ids[:5]}")
    unknown = [i for i in ids if not vocabulary.knows(i, exclusive=exclusive)]
    if unknown:
        raise LabelError(
            "unknown_category", f"unknown category id(s) {unknown[:5]} ({vocabulary.origin})"
        )
    return cast(Label, {**label, "category_ids": ids})


def in_holdout(product_id: str, fraction: float) -> bool:
    """Whether a product belongs to the hash holdout: fixed per product, whatever else is labelled."""
    digest = hashlib.sha1(f"holdout:{product_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


@dataclass(frozen=True)
class LabelledProduct:
    """A product of the snapshot and its live labels (exclusive class id, rule-based node ids)."""

    product: dict[str, Any]
    exclusive: str | None
    rule_based: tuple[str, ...] = ()

    @property
    def product_id(self) -> str:
        return str(self.product["product_id"])

    def to_json(self) -> str:
        return json.dumps(
            {"product": self.product, "exclusive": self.exclusive, "rule_based": self.rule_based},
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, line: str) -> LabelledProduct:
        data = json.loads(line)
        return cls(
            dict(data["product"]), data.get("exclusive"), tuple(data.get("rule_based") or ())
        )


@dataclass
class SnapshotCounts:
    """What a snapshot was made of: live labels, why some were left out, what was joined."""

    labels: int = 0
    valid: Counter[str] = field(default_factory=Counter)  # by objective
    invalid: Counter[str] = field(default_factory=Counter)  # by reason
    without_product: int = 0
    products: int = 0
    labelled_products: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "valid": dict(self.valid),
            "invalid": dict(self.invalid),
            "without_product": self.without_product,
            "products": self.products,
            "labelled_products": self.labelled_products,
        }


def join_snapshot(
    labels: Iterable[tuple[bytes | None, Mapping[str, Any] | LabelError]],
    products: Mapping[str, Mapping[str, Any]],
    vocabulary: Vocabulary,
    exclusive_labels: dict[str, Mapping[str, Any]] | None = None,
) -> tuple[list[LabelledProduct], SnapshotCounts]:
    """Join live labels (key, decoded label or its decode error) with live products by id.

    Products come out sorted by ``product_id`` so a snapshot of the same topics is the same file.
    ``exclusive_labels``, when given, receives each joined product's exclusive label (its source,
    annotator and time: what the label firewall needs).
    """
    counts = SnapshotCounts(products=len(products))
    exclusive: dict[str, str] = {}
    rule_based: dict[str, tuple[str, ...]] = {}
    for key, item in labels:
        counts.labels += 1
        try:
            if isinstance(item, LabelError):
                raise item
            label = validate_label(item, vocabulary, key)
        except LabelError as exc:
            counts.invalid[exc.kind] += 1
            continue
        product_id = label["product_id"]
        if product_id not in products:
            counts.without_product += 1
            continue
        counts.valid[label["objective"]] += 1
        if label["objective"] == "exclusive":
            exclusive[product_id] = label["category_ids"][0]
            if exclusive_labels is not None:
                exclusive_labels[product_id] = label
        else:
            rule_based[product_id] = tuple(label["category_ids"])
    ids = sorted(set(exclusive) | set(rule_based))
    counts.labelled_products = len(ids)
    joined = [
        LabelledProduct(dict(products[i]), exclusive.get(i), rule_based.get(i, ())) for i in ids
    ]
    return joined, counts


def write_snapshot(items: Iterable[LabelledProduct], path: Path) -> int:
    """Write JSON lines (written to ``<path>.partial``, then renamed); returns the count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    count = 0
    with tmp.open("w", encoding="utf-8") as handle:
        for item in items:
            handle.write(item.to_json() + "\n")
            count += 1
    tmp.rename(path)
    return count


def read_snapshot(path: Path) -> Iterator[LabelledProduct]:
    """The labelled products of a snapshot (or fixed holdout) file."""
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        yield LabelledProduct.from_json(line)
                    except (ValueError, KeyError, TypeError) as exc:
                        raise TrainingError(f"{path}:{number}: not a snapshot line: {exc}") from exc
    except OSError as exc:
        raise TrainingError(f"cannot read snapshot {path}: {exc}") from exc
