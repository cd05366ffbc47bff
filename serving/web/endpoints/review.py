"""The Review queue's JSON API under ``/ui/api/review``: the held labels, confirm, correct.
Reads and writes wait until the view has caught up with the topics (before that, a label changed
after it was held could look unchanged)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel, Field

from prodcat.serving.web.dependencies import ANNOTATOR, WEB, WRITER
from prodcat.training.firewall import SuspectLabel

LIMIT = Annotated[int, Query(ge=1, le=1000)]


class ReviewIn(BaseModel):
    product_id: str = Field(min_length=1, max_length=300)


class CorrectIn(ReviewIn):
    category_id: str = Field(min_length=1, max_length=100)


def _json(record: SuspectLabel) -> dict[str, Any]:
    return {
        "product_id": record.product_id,
        "status": record.status,
        "category_id": record.category_id,
        "previous_category_id": record.previous_category_id,
        "reviewed_by": record.reviewed_by,
    }


def queue(web: WEB, user: ANNOTATOR, limit: LIMIT = 200) -> dict[str, Any]:
    web.caught_up()
    return web.parts.review.queue(limit)


def confirm(body: ReviewIn, web: WEB, user: WRITER) -> dict[str, Any]:
    web.caught_up()
    return _json(web.parts.review.confirm(user, body.product_id))


def correct(body: CorrectIn, web: WEB, user: WRITER) -> dict[str, Any]:
    web.caught_up()
    return _json(web.parts.review.correct(user, body.product_id, body.category_id))
