"""``python -m tests.streams.buggy_worker worker ROLE...``: ``prodcat worker ROLE...`` with a bug injected
into every stage handler it runs: ``process`` raises ``RuntimeError`` for any batch that holds a
record whose key contains :data:`MARKER`. Nothing else changes (the real runtime, broker, models),
so a test sees what the stage runtime does with a bug that is not bad input, stage by stage."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from prodcat.streams import runtime

MARKER = b"injected-bug"
ERROR = "an injected bug in the stage's handler"


def _inject() -> None:
    original = runtime.StageRuntime.__init__

    def init(self: runtime.StageRuntime, settings: Any, stage: Any, *args: Any, **kw: Any) -> None:
        original(self, settings, stage, *args, **kw)
        process = stage.process

        def buggy(batch: Sequence[Any]) -> Any:
            if any(MARKER in (record.key or b"") for record in batch):
                raise RuntimeError(ERROR)
            return process(batch)

        stage.process = buggy

    runtime.StageRuntime.__init__ = init  # type: ignore[method-assign]


if __name__ == "__main__":
    _inject()
    from prodcat.cli import main

    raise SystemExit(main(sys.argv[1:]))
