"""The Mappings screen's JSON API under ``/ui/api/mappings``: the mined table, approve, reject.
Reads and writes wait until the view has caught up with the topics (before that, a product
labelled by a person could look unlabelled and get a mapping label)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel, Field

from prodcat.serving.web.dependencies import ANNOTATOR, WEB, WRITER

FEED = Annotated[str | None, Query(max_length=200)]
SORT = Annotated[str, Query(max_length=20, pattern=r"^[a-z_]+$")]
MIN_SUPPORT = Annotated[int, Query(ge=1, le=1_000_000)]


class FeedPathIn(BaseModel):
    feed: str = Field(min_length=1, max_length=200)
    feed_path: list[Annotated[str, Field(min_length=1, max_length=300)]] = Field(
        min_length=1, max_length=20
    )


class ApproveIn(FeedPathIn):
    #: Another node than the mined one (from the category search); None: the mined node.
    category_id: str | None = Field(default=None, min_length=1, max_length=100)


def table(
    web: WEB,
    user: ANNOTATOR,
    feed: FEED = None,
    sort: SORT = "support",
    min_support: MIN_SUPPORT = 5,
) -> dict[str, Any]:
    web.caught_up()
    return web.parts.mappings.table(
        feed=feed or None, sort=sort, min_support=min_support, limit=web.ui.mapping_rows
    )


def approve(body: ApproveIn, web: WEB, user: WRITER) -> dict[str, Any]:
    web.caught_up()
    done = web.parts.mappings.approve(user, body.feed, body.feed_path, body.category_id)
    return done.as_json()


def reject(body: FeedPathIn, web: WEB, user: WRITER) -> dict[str, Any]:
    web.caught_up()
    decision = web.parts.mappings.reject(user, body.feed, body.feed_path)
    return {"status": decision.status, "decided_by": decision.decided_by}
