"""The annotation JSON API under ``/ui/api/``: the next queued product, label, skip, undo, and the
category search. Queue reads and writes wait until the view has caught up with the topics."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from prodcat.serving.web.dependencies import ANNOTATOR, SEARCH, STRATEGY, WEB, WRITER


class LabelIn(BaseModel):
    product_id: str = Field(min_length=1, max_length=512)
    category_id: str = Field(min_length=1, max_length=100)


class ProductIn(BaseModel):
    product_id: str = Field(min_length=1, max_length=512)


def next_item(web: WEB, user: ANNOTATOR, strategy: STRATEGY = None) -> dict[str, Any]:
    web.caught_up()
    annotation = web.parts.annotation
    return {"item": annotation.next_item(user, strategy or None), "depth": annotation.depth()}


def label(body: LabelIn, web: WEB, user: WRITER) -> dict[str, Any]:
    web.caught_up()
    written = web.parts.annotation.submit(user, body.product_id, body.category_id)
    return {"label": written}


def skip(body: ProductIn, web: WEB, user: WRITER) -> dict[str, Any]:
    web.caught_up()
    web.parts.annotation.skip(user, body.product_id)
    return {"skipped": body.product_id}


def undo(web: WEB, user: WRITER) -> dict[str, Any]:
    web.caught_up()
    return web.parts.annotation.undo(user)


def categories(web: WEB, user: ANNOTATOR, q: SEARCH = "") -> dict[str, Any]:
    return {"categories": web.parts.annotation.vocabulary.search(q, web.ui.page_size)}
