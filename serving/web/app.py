"""The web UI's FastAPI app: pages, their JSON endpoints, sessions, CSRF and security headers.

Pages (server-rendered): ``/login``, ``/annotate``, ``/progress``, ``/similar``, ``/report``,
``/mappings``, ``/taxonomy``. JSON under ``/ui/api/``: ``next``, ``label``, ``skip``, ``undo``,
``categories``, ``products``, ``subtrees``, ``similar`` (GET by product, POST an upload),
``judgements``, ``mappings`` (GET the table, POST ``approve`` and ``reject``), ``taxonomy/nodes``
and ``taxonomy/changes`` (GET the history, POST a change). Product images are
fetched through the guarded image fetcher and served from ``/img/{product_id}``; CSS and
JavaScript from ``/static`` (no CDN; the Content-Security-Policy allows only this origin).
``/healthz`` and ``/metrics`` as in the API.

Every page and endpoint but login, health and metrics needs a logged-in annotator; every write
(POST) also needs the session's CSRF token (form field or ``X-CSRF-Token``) and must not come
from another site. Endpoints are plain ``def`` where they block (Kafka, Milvus, SQLite), so they
run in FastAPI's thread pool.

The HTTP layer is laid out as MLServer's ``rest/`` is: :mod:`~prodcat.serving.web.routes` is the
route table, :mod:`~prodcat.serving.web.endpoints` holds the endpoints by area (HTTP concerns
only, then a call to the annotation or similarity service), :mod:`~prodcat.serving.web.errors`
maps error classes to answers, :mod:`~prodcat.serving.web.middleware` sets sessions and security
headers, and :mod:`~prodcat.serving.web.dependencies` resolves the app's context, the annotator
and the CSRF-checked writer. This module only puts them together.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from prodcat.serving.image_fetch import ImageFetcher
from prodcat.serving.request_limits import RequestGuard
from prodcat.serving.web.context import HERE, WebContext, WebParts
from prodcat.serving.web.errors import EXCEPTION_HANDLERS
from prodcat.serving.web.middleware import SessionsAndHeaders, request_guard
from prodcat.serving.web.routes import ROUTES

__all__ = ["WebParts", "create_web_app"]


def create_web_app(parts: WebParts) -> FastAPI:
    """The FastAPI app of the web UI over ``parts``: the routes of
    :data:`~prodcat.serving.web.routes.ROUTES`, the error handlers of
    :data:`~prodcat.serving.web.errors.EXCEPTION_HANDLERS` and the session/header middleware."""
    web = WebContext.of(parts)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with ImageFetcher(parts.images) as images:
            web.fetchers.append(images)
            yield
        web.fetchers.clear()

    app = FastAPI(
        title="prodcat UI",
        version="1",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
        exception_handlers=dict(EXCEPTION_HANDLERS),
    )
    app.state.web = web
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.middleware("http")(SessionsAndHeaders(parts))
    # Outermost: refuses uploads before anything reads (or spools) their body.
    app.add_middleware(RequestGuard, **request_guard(parts))
    for route in ROUTES:
        options: dict[str, Any] = {}
        if route.response_class is not None:
            options["response_class"] = route.response_class
        app.add_api_route(
            route.path, route.endpoint, methods=[route.method], name=route.name, **options
        )
    return app
