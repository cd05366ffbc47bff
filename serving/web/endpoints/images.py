"""``/img/{product_id}``: a product's first image, fetched through the guarded image fetcher."""

from __future__ import annotations

import logging

from fastapi import HTTPException, Response
from starlette.concurrency import run_in_threadpool

from prodcat.serving.exceptions import ImageFetchError
from prodcat.serving.web.dependencies import ANNOTATOR, WEB

logger = logging.getLogger(__name__)


async def image(product_id: str, web: WEB, user: ANNOTATOR) -> Response:
    # The view's lock may be held by the follower for a whole batch: not on the event loop.
    product = await run_in_threadpool(web.parts.view.product, product_id)
    fetcher = web.fetcher
    if product is None or not product["image_url"] or fetcher is None:
        raise HTTPException(404, "no image")
    try:
        fetched = await fetcher.fetch(product["image_url"])
    except ImageFetchError as exc:
        logger.info("ui: image of %s: %s", product_id, exc)
        raise HTTPException(404, f"image unavailable ({exc.kind})") from exc
    return Response(
        fetched.data,
        media_type=fetched.media_type,
        headers={"Cache-Control": "private, max-age=3600"},
    )
