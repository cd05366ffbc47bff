"""Taxonomy changes as events: rename, move, merge and split a node of the category tree.

A :class:`Change` is what an operator asked for (``prodcat taxonomy rename|move|merge|split``);
:func:`apply_change` turns it into a new tree and the **id map** everything else follows:

* **rename** ``NODE --name N`` and **move** ``NODE --parent P`` change the paths of the node and its
  subtree. Ids follow the tree's own scheme: a node whose id is its path id (trees built from
  paths) gets the path id of its new path; a node with an id of its own (a taxonomy file's: Google
  ``421``) keeps it. A sibling with the same name is refused (that is a merge).
* **merge** ``NODE --into T``: the node's products belong to ``T`` from now on; its children
  move under ``T`` (a child named like one of ``T``'s merges into it, recursively); the node and
  every merged descendant map to their target.
* **split** ``NODE --into A --into B``: new children of the node (new ids; the node keeps its own).
  Nothing maps: labels at the node stay valid, as partial labels a person may refine.

Every node outside the changed subtree keeps its id and path. Product counts move with the nodes,
so the exclusive subset of the new tree is computed on the counts the products had.

Pure functions; applying a change to the topics, the rules file and the served model is
:mod:`prodcat.streams.taxonomy_changes`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from prodcat.core.ids import display_name, normalize_name, path_id
from prodcat.training.exceptions import TaxonomyError
from prodcat.training.taxonomy import CategoryTree, _assemble, _Spec

__all__ = ["OPERATIONS", "Applied", "Change", "apply_change", "remap_ids", "resolve_change"]

OPERATIONS: Final = ("rename", "move", "merge", "split")


@dataclass(frozen=True)
class Change:
    """One change of the tree, as requested (JSON on ``taxonomy.events``)."""

    op: str
    node: str
    name: str | None = None  # rename: the new name
    parent: str | None = None  # move: the new parent (None: a root)
    into: str | None = None  # merge: the node that absorbs ``node``
    parts: tuple[str, ...] = ()  # split: the names of the new children
    change_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    by: str | None = None
    at: int = 0

    def describe(self) -> str:
        if self.op == "rename":
            return f"rename {self.node} to {self.name!r}"
        if self.op == "move":
            return f"move {self.node} under {self.parent or '(root)'}"
        if self.op == "merge":
            return f"merge {self.node} into {self.into}"
        return f"split {self.node} into {', '.join(repr(p) for p in self.parts)}"

    def node_paths(self, tree: CategoryTree) -> dict[str, list[str]]:
        """The paths the change's nodes have in ``tree`` (``node_path``, ``parent_path``,
        ``into_path``), for people reading the change."""
        named = {"node": self.node, "parent": self.parent, "into": self.into}
        return {
            f"{what}_path": list(tree[node_id].path)
            for what, node_id in named.items()
            if node_id is not None and node_id in tree
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "change_id": self.change_id,
            "op": self.op,
            "node": self.node,
            "name": self.name,
            "parent": self.parent,
            "into": self.into,
            "parts": list(self.parts),
            "by": self.by,
            "at": self.at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Change:
        op = str(data["op"])
        if op not in OPERATIONS:
            raise ValueError(f"unknown taxonomy change {op!r}")
        return cls(
            op=op,
            node=str(data["node"]),
            name=data.get("name"),
            parent=data.get("parent"),
            into=data.get("into"),
            parts=tuple(str(p) for p in data.get("parts") or ()),
            change_id=str(data.get("change_id") or ""),
            by=data.get("by"),
            at=int(data.get("at") or 0),
        )


@dataclass(frozen=True)
class Applied:
    """A change applied: the trees before and after, and what moved."""

    change: Change
    before: CategoryTree
    after: CategoryTree
    #: old id → new id, for every node whose id changed or that was merged away
    ids: dict[str, str]
    #: ids (of the new tree) whose path changed, new or kept
    moved: frozenset[str]
    #: nodes the change created (split)
    added: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """The event's record: the change (with the paths its nodes had), the versions and the
        id map."""
        return {
            **self.change.to_dict(),
            **self.change.node_paths(self.before),
            "before": self.before.version,
            "after": self.after.version,
            "ids": dict(sorted(self.ids.items())),
            "moved": sorted(self.moved),
            "added": list(self.added),
        }


def remap_ids(ids: Sequence[str], mapping: Mapping[str, str]) -> list[str]:
    """``ids`` through ``mapping`` (unmapped ids as they are), first occurrences kept in order."""
    return list(dict.fromkeys(mapping.get(i, i) for i in ids))


@dataclass
class _Node:
    id: str
    name: str
    parent: str | None
    count: int
    own_id: bool  # the id is the tree's own, not the path id of the node's path


class _Editable:
    """A tree as mutable nodes; :meth:`tree` builds the new immutable tree with re-derived ids."""

    def __init__(self, tree: CategoryTree) -> None:
        self.source = tree.source
        self.nodes = {
            n.id: _Node(n.id, n.name, n.parent, n.count, n.id != path_id(n.path)) for n in tree
        }
        self.merged: dict[str, str] = {}  # removed id → the id it merged into

    def get(self, node_id: str, what: str) -> _Node:
        node = self.nodes.get(node_id)
        if node is None:
            raise TaxonomyError(f"{what} {node_id!r} is not a node of the live taxonomy")
        return node

    def children(self, node_id: str | None) -> list[_Node]:
        return [n for n in self.nodes.values() if n.parent == node_id]

    def child_named(self, parent: str | None, name: str) -> _Node | None:
        key = normalize_name(name)
        return next((n for n in self.children(parent) if normalize_name(n.name) == key), None)

    def ancestors(self, node_id: str | None) -> list[str]:
        out: list[str] = []
        while node_id is not None:
            out.append(node_id)
            node_id = self.nodes[node_id].parent
        return out

    def shift_count(self, node_id: str | None, delta: int) -> None:
        for ancestor in self.ancestors(node_id):
            self.nodes[ancestor].count += delta

    def reparent(self, node: _Node, parent: str | None) -> None:
        self.shift_count(node.parent, -node.count)
        node.parent = parent
        self.shift_count(parent, node.count)

    def merge(self, node: _Node, into: _Node) -> None:
        for child in self.children(node.id):
            twin = self.child_named(into.id, child.name)
            if twin is not None:
                self.merge(child, twin)
            else:
                child.parent = into.id  # counts: node's subtree total moves below
        self.shift_count(node.parent, -node.count)
        self.shift_count(into.id, node.count)
        del self.nodes[node.id]
        self.merged[node.id] = into.id

    def path(self, node_id: str) -> tuple[str, ...]:
        return tuple(self.nodes[i].name for i in reversed(self.ancestors(node_id)))

    def tree(self, before: CategoryTree) -> tuple[CategoryTree, dict[str, str], frozenset[str]]:
        """The new tree, the old id → new id of every node whose id changed, and the new ids of
        the nodes of ``before`` whose path changed."""
        paths = {old: self.path(old) for old in self.nodes}
        new_ids = {
            old: old if node.own_id else path_id(paths[old]) for old, node in self.nodes.items()
        }
        specs = [
            _Spec(
                new_ids[old],
                paths[old],
                None if node.parent is None else new_ids[node.parent],
                node.count,
            )
            for old, node in self.nodes.items()
        ]
        tree = CategoryTree(_assemble(specs), source=self.source)
        changed = {old: new for old, new in new_ids.items() if old != new}
        moved = frozenset(
            new_ids[old] for old in self.nodes if old in before and before[old].path != paths[old]
        )
        return tree, changed, moved


def _name(name: str | None, what: str) -> str:
    shown = display_name(name or "")
    if not shown or ">" in shown:
        raise TaxonomyError(f"{what}: give a non-empty name without '>'")
    return shown


def _node_id(tree: CategoryTree, text: str, what: str) -> str:
    if text in tree:
        return text
    node = tree.find_by_path([level.strip() for level in text.split(">") if level.strip()])
    if node is None:
        raise TaxonomyError(
            f"{what} {text!r} is neither an id nor a path of the live taxonomy "
            "(see `prodcat taxonomy show`)"
        )
    return node.id


def resolve_change(tree: CategoryTree, change: Change) -> Change:
    """``change`` with its nodes named by id (the command line accepts ids or paths ``A > B``)."""
    return replace(
        change,
        node=_node_id(tree, change.node, "the node"),
        parent=None if change.parent is None else _node_id(tree, change.parent, "the parent"),
        into=None if change.into is None else _node_id(tree, change.into, "the merge target"),
    )


def apply_change(tree: CategoryTree, change: Change) -> Applied:
    """``change`` applied to ``tree`` (see the module docstring); raises :class:`TaxonomyError`
    with what to do when the change does not fit the tree."""
    edit = _Editable(tree)
    node = edit.get(change.node, "the node")
    added: list[str] = []
    if change.op == "rename":
        name = _name(change.name, "rename")
        twin = edit.child_named(node.parent, name)
        if twin is not None and twin.id != node.id:
            raise TaxonomyError(
                f"{twin.id} is already named {twin.name!r} beside {node.id}: merge them instead"
            )
        node.name = name
    elif change.op == "move":
        parent = change.parent
        if parent is not None:
            edit.get(parent, "the new parent")
            if node.id in edit.ancestors(parent):
                raise TaxonomyError(f"cannot move {node.id} under its own subtree ({parent})")
        twin = edit.child_named(parent, node.name)
        if twin is not None and twin.id != node.id:
            raise TaxonomyError(
                f"{twin.id} is already named {twin.name!r} under {parent or 'the roots'}: "
                f"merge {node.id} into it instead"
            )
        edit.reparent(node, parent)
    elif change.op == "merge":
        if change.into is None:
            raise TaxonomyError("merge: name the node that absorbs it (--into)")
        into = edit.get(change.into, "the merge target")
        if into.id == node.id or node.id in edit.ancestors(into.id):
            raise TaxonomyError(f"cannot merge {node.id} into itself or its own subtree")
        edit.merge(node, into)
    elif change.op == "split":
        if len(change.parts) < 2:
            raise TaxonomyError("split: give two or more new children (--into A --into B)")
        for part in change.parts:
            name = _name(part, "split")
            if edit.child_named(node.id, name) is not None:
                raise TaxonomyError(f"{node.id} already has a child named {name!r}")
            child = _Node(f"new:{name}", name, node.id, 0, False)
            edit.nodes[child.id] = child
            added.append(child.id)
    else:
        raise TaxonomyError(f"unknown change {change.op!r}: one of {', '.join(OPERATIONS)}")
    after, changed, moved = edit.tree(tree)
    ids = dict(changed)
    for gone, target in edit.merged.items():  # chains: a merged child's target may be re-ided
        while target in edit.merged:
            target = edit.merged[target]
        ids[gone] = changed.get(target, target)
    added_ids = tuple(changed.get(temp, temp) for temp in added)
    for temp in added:
        ids.pop(temp, None)
    return Applied(change, tree, after, ids, moved, added_ids)
