"""The Taxonomy page's JSON API under ``/ui/api/taxonomy``: nodes of the live tree, the changes
(running and applied), and a new change (editors only; applied in the background)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import HTTPException
from pydantic import BaseModel, Field

from prodcat.serving.web.dependencies import ANNOTATOR, SEARCH, WEB, WRITER

NAME = Annotated[str, Field(min_length=1, max_length=200)]


class ChangeIn(BaseModel):
    op: Literal["rename", "move", "merge", "split"]
    node: str = Field(min_length=1, max_length=1000)
    name: NAME | None = None
    parent: str | None = Field(default=None, min_length=1, max_length=1000)
    into: str | None = Field(default=None, min_length=1, max_length=1000)
    parts: list[NAME] = Field(default_factory=list, max_length=50)


def nodes(web: WEB, user: ANNOTATOR, q: SEARCH = "") -> dict[str, Any]:
    return {"nodes": web.parts.taxonomy.nodes(q, web.ui.page_size)}


def changes(web: WEB, user: ANNOTATOR) -> dict[str, Any]:
    taxonomy = web.parts.taxonomy
    return {"changes": taxonomy.history(), "can_edit": taxonomy.can_edit(user)}


def change(body: ChangeIn, web: WEB, user: WRITER) -> dict[str, Any]:
    web.caught_up()
    if not web.parts.taxonomy.can_edit(user):
        raise HTTPException(403, "you may not change the taxonomy (PRODCAT_UI__TAXONOMY_EDITORS)")
    return {"change": web.parts.taxonomy.submit(user, body.model_dump())}
