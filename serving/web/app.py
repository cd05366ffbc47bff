"""The web UI's FastAPI app: pages, their JSON endpoints, sessions, CSRF and security headers.

Pages (server-rendered): ``/login``, ``/annotate``, ``/progress``, ``/similar``, ``/report``.
JSON under ``/ui/api/``: ``next``, ``label``, ``skip``, ``undo``, ``categories``, ``products``,
``subtrees``, ``similar`` (GET by product, POST an upload), ``judgements``. Product images are
fetched through the guarded image fetcher and served from ``/img/{product_id}``; CSS and
JavaScript from ``/static`` (no CDN; the Content-Security-Policy allows only this origin).
``/healthz`` and ``/metrics`` as in the API.

Every page and endpoint but login, health and metrics needs a logged-in annotator; every write
(POST) also needs the session's CSRF token (form field or ``X-CSRF-Token``) and must not come
from another site. Endpoints are plain ``def`` where they block (Kafka, Milvus, SQLite), so they
run in FastAPI's thread pool.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import jinja2
from fastapi import (
    Depends,
    FastAPI,
    File,
    Form,
    HTTPException,
    Query,
    Request,
    Response,
    UploadFile,
)
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from prodcat.core.ids import CATEGORY_ID_PATTERN
from prodcat.core.settings import ImageSettings, UiSettings
from prodcat.serving.api import read_upload
from prodcat.serving.exceptions import ImageFetchError, TransientError
from prodcat.serving.image_fetch import ImageFetcher
from prodcat.serving.web.annotation import AnnotationService
from prodcat.serving.web.auth import (
    LoginThrottle,
    Session,
    SessionCodec,
    Users,
    cross_site,
    csrf_ok,
)
from prodcat.serving.web.exceptions import ConflictError, InvalidInputError, PublishError
from prodcat.serving.web.follower import TopicFollower
from prodcat.serving.web.metrics import WebMetrics
from prodcat.serving.web.report import KS, precision_report
from prodcat.serving.web.similarity import SimilarityService
from prodcat.serving.web.view import UNCERTAINTY, TopicView

logger = logging.getLogger(__name__)

HERE = Path(__file__).parent
COOKIE = "prodcat_session"
CSP = (
    "default-src 'self'; img-src 'self' blob:; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)
STRATEGY = Annotated[str | None, Query(max_length=40, pattern=r"^[a-z_]*$")]
CATEGORY = Annotated[str | None, Query(pattern=f"^({CATEGORY_ID_PATTERN})?$")]


@dataclass
class WebParts:
    """What the app is built from (built by :mod:`prodcat.serving.web.server`, or by tests)."""

    settings: UiSettings
    images: ImageSettings
    users: Users
    codec: SessionCodec
    view: TopicView
    annotation: AnnotationService
    similarity: SimilarityService
    metrics: WebMetrics
    follower: TopicFollower | None = None


class LabelIn(BaseModel):
    product_id: str = Field(min_length=1, max_length=512)
    category_id: str = Field(min_length=1, max_length=100)


class ProductIn(BaseModel):
    product_id: str = Field(min_length=1, max_length=512)


def _own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"


def _session(request: Request) -> Session:
    session: Session = request.state.session
    return session


def annotator(request: Request) -> str:
    """The logged-in annotator (401 otherwise)."""
    user = _session(request).user
    if user is None:
        raise HTTPException(401, "log in first")
    return user


def writer(request: Request, user: Annotated[str, Depends(annotator)]) -> str:
    """The logged-in annotator of a same-site request carrying the session's CSRF token."""
    if cross_site(request.headers, _own_origin(request)):
        raise HTTPException(403, "cross-site request refused")
    if not csrf_ok(_session(request), request.headers.get("x-csrf-token")):
        raise HTTPException(403, "missing or wrong CSRF token")
    return user


ANNOTATOR = Annotated[str, Depends(annotator)]
WRITER = Annotated[str, Depends(writer)]


def create_web_app(parts: WebParts) -> FastAPI:
    """The FastAPI app of the web UI over ``parts``."""
    ui, metrics, codec = parts.settings, parts.metrics, parts.codec
    throttle = LoginThrottle(ui.login_attempts_per_minute)
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True
    )
    templates = Jinja2Templates(env=environment)
    fetcher: list[ImageFetcher] = []

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with ImageFetcher(parts.images) as images:
            fetcher.append(images)
            yield
        fetcher.clear()

    app = FastAPI(
        title="prodcat UI",
        version="1",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.middleware("http")
    async def sessions_and_headers(
        request: Request, call_next: Callable[[Request], Any]
    ) -> Response:
        started = time.perf_counter()
        session = codec.loads(request.cookies.get(COOKIE))
        if (
            session is not None
            and session.user is not None
            and not parts.users.exists(session.user)
        ):
            session = None  # the account was removed: the session ends
        request.state.session = session or codec.new(None)
        request.state.set_cookie = session is None
        response: Response = await call_next(request)
        if request.state.set_cookie:
            response.set_cookie(
                COOKIE,
                codec.dumps(request.state.session),
                max_age=int(ui.session_ttl_s),
                httponly=True,
                samesite="lax",
                secure=ui.cookie_secure,
                path="/",
            )
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CSP)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("X-Frame-Options", "DENY")
        if not request.url.path.startswith(("/static/", "/img/")):
            headers.setdefault("Cache-Control", "no-store")
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")
        metrics.http.latency.labels(name).observe(time.perf_counter() - started)
        metrics.http.requests.labels(name, str(response.status_code)).inc()
        return response

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 401 and not request.url.path.startswith("/ui/api/"):
            target = quote(
                request.url.path + (f"?{request.url.query}" if request.url.query else "")
            )
            return RedirectResponse(f"/login?next={target}", status_code=303)
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(ConflictError)
    async def conflict(_request: Request, exc: ConflictError) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(InvalidInputError)
    async def invalid(_request: Request, exc: InvalidInputError) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(PublishError)
    @app.exception_handler(TransientError)
    async def unavailable(request: Request, exc: Exception) -> Response:
        logger.warning("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse(
            {"detail": f"not saved, a backing service is unavailable: {exc}"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    def page(request: Request, name: str, **context: Any) -> HTMLResponse:
        session = _session(request)
        follower = parts.follower
        return templates.TemplateResponse(
            request,
            name,
            {
                "user": session.user,
                "csrf": session.csrf,
                "catching_up": follower is not None and not follower.ready.is_set(),
                **context,
            },
        )

    # -- health and metrics ---------------------------------------------------------------------

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        follower = parts.follower
        ready = follower is None or follower.ready.is_set()
        body = {"status": "ok" if ready else "catching_up", "ready": ready}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics")
    def prometheus() -> Response:
        parts.annotation.depth()  # the queue-depth gauge is read at scrape time
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # -- login ----------------------------------------------------------------------------------

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = "/annotate") -> HTMLResponse:
        return page(request, "login.html", next=_safe_next(next), error=None)

    @app.post("/login", response_class=HTMLResponse)
    def login(
        request: Request,
        name: Annotated[str, Form(max_length=64)],
        password: Annotated[str, Form(max_length=1024)],
        csrf_token: Annotated[str, Form(max_length=200)],
        next: Annotated[str, Form(max_length=500)] = "/annotate",
    ) -> Response:
        if cross_site(request.headers, _own_origin(request)) or not csrf_ok(
            _session(request), csrf_token
        ):
            raise HTTPException(403, "the form expired or came from another site; reload it")
        if not throttle.allowed(name):
            response = page(
                request,
                "login.html",
                next=_safe_next(next),
                error="Too many failed attempts; wait a minute.",
            )
            response.status_code = 429
            return response
        if not parts.users.authenticate(name, password):
            throttle.failed(name)
            response = page(
                request, "login.html", next=_safe_next(next), error="Wrong name or password."
            )
            response.status_code = 401
            return response
        request.state.session = codec.new(name)  # a fresh CSRF token at login
        request.state.set_cookie = True
        logger.info("ui: %s logged in", name)
        return RedirectResponse(_safe_next(next), status_code=303)

    @app.post("/logout")
    def logout(request: Request, csrf_token: Annotated[str, Form(max_length=200)]) -> Response:
        if not csrf_ok(_session(request), csrf_token):
            raise HTTPException(403, "missing or wrong CSRF token")
        request.state.session = codec.new(None)
        request.state.set_cookie = True
        return RedirectResponse("/login", status_code=303)

    # -- pages ----------------------------------------------------------------------------------

    @app.get("/")
    def home() -> RedirectResponse:
        return RedirectResponse("/annotate", status_code=303)

    @app.get("/annotate", response_class=HTMLResponse)
    def annotate_page(request: Request, user: ANNOTATOR, strategy: STRATEGY = None) -> HTMLResponse:
        strategies = parts.view.strategies()
        return page(
            request,
            "annotate.html",
            strategies=strategies,
            strategy=strategy or "",
            uncertainty=UNCERTAINTY,
            depth=parts.annotation.depth(),
        )

    @app.get("/progress", response_class=HTMLResponse)
    def progress_page(request: Request, user: ANNOTATOR) -> HTMLResponse:
        now_ms = time.time_ns() // 1_000_000
        hour_now = now_ms // 3_600_000
        stats = parts.view.label_stats((hour_now - 23) * 3_600_000)
        hours = [
            {
                "hour": time.strftime("%H:00", time.localtime(h * 3600)),
                "n": stats["hours"].get(h, 0),
            }
            for h in range(hour_now - 23, hour_now + 1)
        ]
        depth = parts.annotation.depth()
        return page(
            request,
            "progress.html",
            hours=hours,
            peak=max([1, *(h["n"] for h in hours)]),
            depth=depth,
            depth_peak=max([1, *depth.values()]),
            strategies=stats["strategies"],
            annotators=stats["annotators"],
            leased=parts.annotation.leases.leased_count(),
        )

    @app.get("/similar", response_class=HTMLResponse)
    def similar_page(request: Request, user: ANNOTATOR) -> HTMLResponse:
        return page(
            request, "similar.html", neighbours=ui.neighbours, max_upload=ui.max_upload_bytes
        )

    @app.get("/report", response_class=HTMLResponse)
    def report_page(request: Request, user: ANNOTATOR) -> HTMLResponse:
        reports = precision_report(parts.view.judged_pairs())
        return page(
            request, "report.html", reports=reports, ks=KS, judgements=parts.view.judgement_count()
        )

    # -- annotation API -------------------------------------------------------------------------

    def caught_up() -> None:
        """Queue reads and label writes wait until the view has read every topic to its end:
        before that a labelled product could look open and its label be overwritten."""
        if parts.follower is not None and not parts.follower.ready.is_set():
            raise HTTPException(
                503, "catching up with the topics; try again shortly", {"Retry-After": "5"}
            )

    @app.get("/ui/api/next")
    def next_item(user: ANNOTATOR, strategy: STRATEGY = None) -> dict[str, Any]:
        caught_up()
        return {
            "item": parts.annotation.next_item(user, strategy or None),
            "depth": parts.annotation.depth(),
        }

    @app.post("/ui/api/label")
    def label(body: LabelIn, user: WRITER) -> dict[str, Any]:
        caught_up()
        written = parts.annotation.submit(user, body.product_id, body.category_id)
        return {"label": written}

    @app.post("/ui/api/skip")
    def skip(body: ProductIn, user: WRITER) -> dict[str, Any]:
        caught_up()
        parts.annotation.skip(user, body.product_id)
        return {"skipped": body.product_id}

    @app.post("/ui/api/undo")
    def undo(user: WRITER) -> dict[str, Any]:
        caught_up()
        return parts.annotation.undo(user)

    @app.get("/ui/api/categories")
    def categories(
        user: ANNOTATOR, q: Annotated[str, Query(max_length=200)] = ""
    ) -> dict[str, Any]:
        return {"categories": parts.annotation.vocabulary.search(q, ui.page_size)}

    # -- similarity API -------------------------------------------------------------------------

    @app.get("/ui/api/products")
    def products(user: ANNOTATOR, q: Annotated[str, Query(max_length=200)] = "") -> dict[str, Any]:
        return {"products": parts.view.search_products(q, ui.page_size)}

    @app.get("/ui/api/subtrees")
    def subtrees(user: ANNOTATOR, q: Annotated[str, Query(max_length=200)] = "") -> dict[str, Any]:
        return {"categories": parts.view.search_categories(q, ui.page_size)}

    @app.get("/ui/api/similar")
    def similar_to_product(
        user: ANNOTATOR,
        product_id: Annotated[str, Query(min_length=1, max_length=512)],
        k: Annotated[int, Query(ge=1, le=100)] = ui.neighbours,
        category: CATEGORY = None,
    ) -> dict[str, Any]:
        return parts.similarity.by_product(product_id, k, category or None)

    @app.post("/ui/api/similar")
    def similar_to_upload(
        user: WRITER,
        image: Annotated[UploadFile, File()],
        k: Annotated[int, Form(ge=1, le=100)] = ui.neighbours,
        category: Annotated[str | None, Form(pattern=f"^({CATEGORY_ID_PATTERN})?$")] = None,
    ) -> dict[str, Any]:
        data = read_upload(image, ui.max_upload_bytes)
        return parts.similarity.by_image(data, k, category or None)

    @app.post("/ui/api/judgements")
    def judge(body: dict[str, Any], user: WRITER) -> dict[str, Any]:
        return {"judgement": parts.similarity.judge(user, body)}

    # -- images ---------------------------------------------------------------------------------

    @app.get("/img/{product_id}")
    async def image(product_id: str, user: ANNOTATOR) -> Response:
        # The view's lock may be held by the follower for a whole batch: not on the event loop.
        product = await run_in_threadpool(parts.view.product, product_id)
        if product is None or not product["image_url"] or not fetcher:
            raise HTTPException(404, "no image")
        try:
            fetched = await fetcher[0].fetch(product["image_url"])
        except ImageFetchError as exc:
            logger.info("ui: image of %s: %s", product_id, exc)
            raise HTTPException(404, f"image unavailable ({exc.kind})") from exc
        return Response(
            fetched.data,
            media_type=fetched.media_type,
            headers={"Cache-Control": "private, max-age=3600"},
        )

    return app


def _safe_next(target: str) -> str:
    """Only local paths: ``next`` must not send a fresh login to another site."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/annotate"
    return target
