"""Category ids a similarity search may be restricted to: path ids, or the configured taxonomy's.

The vector store keeps, per product, the path id (:func:`prodcat.core.ids.path_id`) of every
prefix of its category path (:mod:`prodcat.serving.vector_rows`). A caller may name a subtree by
such a ``c_…`` id, or by the id of a node of the configured taxonomy (a Google ``"166"``, a Best
Buy ``"abcat0100000"``): :class:`SubtreeIds` turns the latter into the path id of the node's path,
so products whose category path runs through that node are found. The tree is asked for again
every minute, so a newly imported taxonomy is used without a restart.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Final

from prodcat.core.errors import ProdcatError
from prodcat.core.ids import CATEGORY_ID_PATTERN, path_id
from prodcat.training.taxonomy import CategoryTree

__all__ = ["SUBTREE_ID_PATTERN", "LiveTree", "SubtreeIds"]

logger = logging.getLogger(__name__)

#: What a caller may send: a path id or a taxonomy node id (letters, digits, ``_.:-``).
SUBTREE_ID_PATTERN: Final = r"[A-Za-z0-9_.:\-]{1,80}"
_PATH_ID: Final = re.compile(f"^{CATEGORY_ID_PATTERN}$")
_CHECK_S: Final = 60.0


class LiveTree:
    """The configured taxonomy as ``taxonomy()`` gives it, asked for again at most every
    ``check_s`` (the tree it had is kept when a re-read fails); None without a source."""

    def __init__(
        self,
        taxonomy: Callable[[], CategoryTree | None] | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        check_s: float = _CHECK_S,
        who: str = "api",
    ) -> None:
        self.taxonomy = taxonomy
        self.clock = clock
        self.check_s = check_s
        self.who = who
        self._tree: CategoryTree | None = None
        self._checked = -1e18
        self._lock = threading.Lock()

    def expire(self) -> None:
        """Read the tree again at the next :meth:`get` (after a change this process made)."""
        with self._lock:
            self._checked = -1e18

    def get(self) -> CategoryTree | None:
        if self.taxonomy is None:
            return None
        with self._lock:
            now = self.clock()
            if now - self._checked >= self.check_s:
                self._checked = now
                try:
                    self._tree = self.taxonomy()
                except ProdcatError as exc:
                    logger.warning("%s: cannot read the taxonomy: %s", self.who, exc)
            return self._tree


class SubtreeIds:
    """Resolves a subtree id to the path id the vector store filters on (None: unknown)."""

    def __init__(
        self,
        taxonomy: Callable[[], CategoryTree | None] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        check_s: float = _CHECK_S,
    ) -> None:
        self.live = LiveTree(taxonomy, clock=clock, check_s=check_s)

    def tree(self) -> CategoryTree | None:
        """The live tree, re-read at most every ``check_s`` (kept when a re-read fails)."""
        return self.live.get()

    def resolve(self, category: str) -> str | None:
        """The path id of ``category``: itself when it is one, else that of the taxonomy node
        with this id; None when it is neither."""
        if _PATH_ID.match(category):
            return category
        tree = self.tree()
        node = tree.get(category) if tree is not None else None
        return path_id(node.path) if node is not None else None
