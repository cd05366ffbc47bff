"""The Taxonomy page: the live tree, node changes (rename, move, merge, split) and their history.

A change is applied by the function the process is given (``prodcat ui`` passes one that runs
:func:`prodcat.streams.taxonomy_changes.change_taxonomy` with the backfill: the tree, the labels,
the rules file, the served model and the affected predictions, then the event on
``taxonomy.events``). It runs in one background thread, one change at a time, because it reads
the labels topic and re-scores products; the page polls its state. The history is what the view
has read from ``taxonomy.events``, newest first, with the changes still running.

Only annotators named in ``PRODCAT_UI__TAXONOMY_EDITORS`` may change the tree; everyone signed in
may look at it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prodcat.core.errors import ProdcatError
from prodcat.serving.web.annotation import VocabularyCache
from prodcat.serving.web.exceptions import ConflictError, InvalidInputError
from prodcat.serving.web.view import TopicView
from prodcat.training.exceptions import TaxonomyError
from prodcat.training.taxonomy_changes import Change, apply_change, resolve_change

logger = logging.getLogger(__name__)

#: Applies one change everywhere and returns its report (the event's JSON).
ApplyChange = Callable[[Change], Mapping[str, Any]]


class TaxonomyService:
    """What the Taxonomy page does; thread-safe."""

    def __init__(
        self,
        view: TopicView,
        vocabulary: VocabularyCache,
        editors: tuple[str, ...],
        apply: ApplyChange | None,
    ) -> None:
        self.view = view
        self.vocabulary = vocabulary
        self.editors = frozenset(editors)
        self.apply = apply
        self._jobs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._runner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="taxonomy-change")

    def close(self) -> None:
        self._runner.shutdown(wait=True, cancel_futures=False)

    def can_edit(self, user: str) -> bool:
        return self.apply is not None and user in self.editors

    def nodes(self, text: str, limit: int) -> list[dict[str, Any]]:
        """Nodes of the live tree whose path contains every word of ``text`` (shallow first)."""
        tree = self.vocabulary.tree.get()
        if tree is None:
            return []
        wanted = text.casefold().split()
        found: list[dict[str, Any]] = []
        for node in tree:
            shown = " > ".join(node.path)
            if all(word in shown.casefold() for word in wanted):
                found.append(
                    {
                        "id": node.id,
                        "path": shown,
                        "depth": node.depth,
                        "children": len(node.children),
                        "count": node.count,
                    }
                )
        found.sort(key=lambda n: (n["depth"], n["path"].casefold()))
        return found[:limit]

    def history(self) -> list[dict[str, Any]]:
        """Changes running or failed in this process, then those on ``taxonomy.events``."""
        with self._lock:
            running = [dict(job) for job in self._jobs.values() if job["state"] != "done"]
        events = self.view.taxonomy_events()
        for event in events:
            event["state"] = "done"
        return sorted(running, key=lambda j: -int(j.get("at") or 0)) + events

    def submit(self, user: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Check a change against the live tree and start applying it; returns the job."""
        if self.apply is None:
            raise ConflictError("this process cannot change the taxonomy (run `prodcat ui`)")
        if user not in self.editors:
            raise ConflictError(
                f"{user} may not change the taxonomy: an operator adds editors with "
                "PRODCAT_UI__TAXONOMY_EDITORS"
            )
        tree = self.vocabulary.tree.get()
        if tree is None:
            raise ConflictError("no taxonomy is stored: `prodcat taxonomy import FILE` first")
        with self._lock:
            if any(job["state"] == "running" for job in self._jobs.values()):
                raise ConflictError("another change is being applied; wait for it")
        try:
            change = Change(
                op=str(body["op"]),
                node=str(body["node"]),
                name=body.get("name"),
                parent=body.get("parent"),
                into=body.get("into"),
                parts=tuple(body.get("parts") or ()),
                by=user,
                at=time.time_ns() // 1_000_000,
            )
            change = resolve_change(tree, change)
            apply_change(tree, change)  # refused here, with the reason, before the job starts
        except (TaxonomyError, ValueError) as exc:
            raise InvalidInputError(str(exc)) from exc
        job = {
            **change.to_dict(),
            **change.node_paths(tree),
            "state": "running",
            "describe": change.describe(),
        }
        with self._lock:
            self._jobs[change.change_id] = job
        self._runner.submit(self._run, change)
        return dict(job)

    def _run(self, change: Change) -> None:
        assert self.apply is not None
        try:
            report = dict(self.apply(change))
        except (ProdcatError, OSError) as exc:
            logger.error("ui: taxonomy change %s failed: %s", change.change_id, exc)
            self._finish(change, {"state": "failed", "error": str(exc)})
            return
        except Exception as exc:  # a bug: shown on the page, logged with its trace
            logger.exception("ui: taxonomy change %s failed", change.change_id)
            self._finish(change, {"state": "failed", "error": f"{type(exc).__name__}: {exc}"})
            return
        self.view.apply_taxonomy_event(change.change_id.encode(), json.dumps(report).encode())
        self.vocabulary.expire()  # the category search shows the new tree at once
        self._finish(change, {"state": "done"})

    def _finish(self, change: Change, update: dict[str, Any]) -> None:
        with self._lock:
            self._jobs[change.change_id].update(update)
