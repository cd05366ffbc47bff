"""The similarity JSON API under ``/ui/api/``: product and subtree search, neighbours of a
product or of an uploaded image, and relevance judgements."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import File, Form, Query, UploadFile

from prodcat.core.ids import CATEGORY_ID_PATTERN
from prodcat.serving.api import read_upload
from prodcat.serving.product_vectors import Mode
from prodcat.serving.web.dependencies import ANNOTATOR, CATEGORY, SEARCH, WEB, WRITER

# ``k`` defaults to the configured number of neighbours (``UiSettings.neighbours``).
K_QUERY = Annotated[int | None, Query(ge=1, le=100)]
K_FORM = Annotated[int | None, Form(ge=1, le=100)]


def products(web: WEB, user: ANNOTATOR, q: SEARCH = "") -> dict[str, Any]:
    return {"products": web.parts.view.search_products(q, web.ui.page_size)}


def subtrees(web: WEB, user: ANNOTATOR, q: SEARCH = "") -> dict[str, Any]:
    return {"categories": web.parts.view.search_categories(q, web.ui.page_size)}


def similar_to_product(
    web: WEB,
    user: ANNOTATOR,
    product_id: Annotated[str, Query(min_length=1, max_length=512)],
    k: K_QUERY = None,
    category: CATEGORY = None,
    mode: Mode | None = None,
) -> dict[str, Any]:
    k = web.ui.neighbours if k is None else k
    return web.parts.similarity.by_product(product_id, k, category or None, mode)


def similar_to_upload(
    web: WEB,
    user: WRITER,
    image: Annotated[UploadFile, File()],
    k: K_FORM = None,
    category: Annotated[str | None, Form(pattern=f"^({CATEGORY_ID_PATTERN})?$")] = None,
) -> dict[str, Any]:
    k = web.ui.neighbours if k is None else k
    data = read_upload(image, web.ui.max_upload_bytes, web.parts.images.max_pixels)
    return web.parts.similarity.by_image(data, k, category or None)


def judge(body: dict[str, Any], web: WEB, user: WRITER) -> dict[str, Any]:
    return {"judgement": web.parts.similarity.judge(user, body)}
