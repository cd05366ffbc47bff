"""The web UI's routes: one table of (method, path, endpoint, name), registered by
:func:`prodcat.serving.web.app.create_web_app` in this order.

Every page and endpoint but login, health and metrics needs a logged-in annotator (``ANNOTATOR``);
every write (POST) also needs the session's CSRF token and must not come from another site
(``WRITER``, or the login and logout forms' own check). See :mod:`prodcat.serving.web.dependencies`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from fastapi import Response
from fastapi.responses import HTMLResponse

from prodcat.serving.web.endpoints import (
    annotation,
    auth,
    health,
    images,
    mappings,
    pages,
    review,
    similarity,
    taxonomy,
)

__all__ = ["ROUTES", "Route"]


@dataclass(frozen=True, slots=True)
class Route:
    """One HTTP route: ``method`` and ``path`` answered by ``endpoint``, named ``name``."""

    method: str
    path: str
    endpoint: Callable[..., Any]
    name: str
    response_class: type[Response] | None = None


_HTML = HTMLResponse

ROUTES: Final[tuple[Route, ...]] = (
    # health and metrics
    Route("GET", "/healthz", health.healthz, "healthz"),
    Route("GET", "/metrics", health.prometheus, "prometheus"),
    # login
    Route("GET", "/login", auth.login_page, "login_page", _HTML),
    Route("POST", "/login", auth.login, "login", _HTML),
    Route("POST", "/logout", auth.logout, "logout"),
    # pages
    Route("GET", "/", pages.home, "home"),
    Route("GET", "/annotate", pages.annotate_page, "annotate_page", _HTML),
    Route("GET", "/progress", pages.progress_page, "progress_page", _HTML),
    Route("GET", "/similar", pages.similar_page, "similar_page", _HTML),
    Route("GET", "/report", pages.report_page, "report_page", _HTML),
    Route("GET", "/mappings", pages.mappings_page, "mappings_page", _HTML),
    Route("GET", "/taxonomy", pages.taxonomy_page, "taxonomy_page", _HTML),
    Route("GET", "/review", pages.review_page, "review_page", _HTML),
    # annotation API
    Route("GET", "/ui/api/next", annotation.next_item, "next_item"),
    Route("POST", "/ui/api/label", annotation.label, "label"),
    Route("POST", "/ui/api/skip", annotation.skip, "skip"),
    Route("POST", "/ui/api/undo", annotation.undo, "undo"),
    Route("GET", "/ui/api/categories", annotation.categories, "categories"),
    # similarity API
    Route("GET", "/ui/api/products", similarity.products, "products"),
    Route("GET", "/ui/api/subtrees", similarity.subtrees, "subtrees"),
    Route("GET", "/ui/api/similar", similarity.similar_to_product, "similar_to_product"),
    Route("POST", "/ui/api/similar", similarity.similar_to_upload, "similar_to_upload"),
    Route("POST", "/ui/api/judgements", similarity.judge, "judge"),
    # feed-category mappings API
    Route("GET", "/ui/api/mappings", mappings.table, "mappings"),
    Route("POST", "/ui/api/mappings/approve", mappings.approve, "approve_mapping"),
    Route("POST", "/ui/api/mappings/reject", mappings.reject, "reject_mapping"),
    # taxonomy API
    Route("GET", "/ui/api/taxonomy/nodes", taxonomy.nodes, "taxonomy_nodes"),
    Route("GET", "/ui/api/taxonomy/changes", taxonomy.changes, "taxonomy_changes"),
    Route("POST", "/ui/api/taxonomy/changes", taxonomy.change, "taxonomy_change"),
    # review queue API (labels the firewall holds)
    Route("GET", "/ui/api/review", review.queue, "review_queue"),
    Route("POST", "/ui/api/review/confirm", review.confirm, "review_confirm"),
    Route("POST", "/ui/api/review/correct", review.correct, "review_correct"),
    # images
    Route("GET", "/img/{product_id}", images.image, "image"),
)
"""Every route of the web UI; ``/static`` (CSS, JavaScript) is mounted beside them."""
