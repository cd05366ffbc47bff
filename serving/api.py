"""The similarity HTTP API: similar products by product id, by an uploaded image, or by words.

    GET  /v1/similar/{product_id}?k=10&category=ID&exclude_self=false&mode=hybrid
    POST /v1/similar?k=10&category=ID             (multipart form, field ``image``)
    GET  /v1/search?q=WORDS&k=10&category=ID       (title vectors)
    GET  /healthz                                  (image and title vectors stored)
    GET  /metrics                                  (Prometheus)

``mode`` (default ``PRODCAT_SIMILARITY__MODE``) compares image vectors, title vectors or both fused
(:mod:`prodcat.serving.product_vectors`); an uploaded image is compared by its image vector, words
by their title vector.

A product query also ranks the same kind of thing higher: with ``PRODCAT_SIMILARITY__KIND_WEIGHT``
above 0, ``prodcat api`` follows ``products.predictions`` and a candidate whose top-1 predicted
category is the query product's gains ``kind_weight x sqrt(p x p')``
(:func:`~prodcat.serving.product_vectors.same_kind`).

``category`` restricts the search to a category subtree at any level: the id of any prefix of a
category path (``c_…``, as in predictions: :func:`prodcat.core.ids.path_id`), or the id of a node
of the configured taxonomy (:class:`~prodcat.serving.subtrees.SubtreeIds`); an id that is neither
is a 404. Without it the search is global.
Endpoints are plain ``def``: FastAPI runs them in its thread pool, so the blocking Milvus and model
calls do not stall the event loop.

**Access.** With ``PRODCAT_API__KEY`` set, every ``/v1`` request needs it (``X-API-Key: KEY`` or
``Authorization: Bearer KEY``; 401 otherwise). Without a key the API is open: it must then sit
behind the web UI's login or an authenticating ingress, never on a public address. Requests are
rate-limited per client (a token bucket: ``rate_per_s``, ``rate_burst``; 429 beyond). Key, rate and
upload size are checked by :class:`~prodcat.serving.request_limits.RequestGuard` before the body is
read; an image whose header announces more than ``PRODCAT_IMAGES__MAX_PIXELS`` pixels is a 422
without being decoded.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, HTTPException, Query, Request, Response, UploadFile
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel

from prodcat.core.image_header import ImageTooLargeError, check_pixels
from prodcat.core.settings import ApiSettings, ImageSettings
from prodcat.serving.backends import ModelBackend
from prodcat.serving.exceptions import ModelInputError, TransientError
from prodcat.serving.image_fetch import sniff_media_type
from prodcat.serving.product_vectors import Mode, ProductVectors, QueryVectors
from prodcat.serving.request_limits import (
    FORM_OVERHEAD_BYTES,
    Refusal,
    RequestGuard,
    TokenBuckets,
)
from prodcat.serving.subtrees import SUBTREE_ID_PATTERN, SubtreeIds
from prodcat.serving.vector_store import Hit

logger = logging.getLogger(__name__)

K = Annotated[int, Query(ge=1, le=100, description="neighbours to return")]
CATEGORY = Annotated[
    str | None,
    Query(
        pattern=f"^{SUBTREE_ID_PATTERN}$",
        description="restrict to this subtree: a c_… path id or a node id of the taxonomy",
    ),
]
MODE = Annotated[
    Mode | None,
    Query(description="image, text (titles) or hybrid; default PRODCAT_SIMILARITY__MODE"),
]
WORDS = Annotated[
    str, Query(min_length=1, max_length=512, description="words to search titles for")
]


class HitOut(BaseModel):
    product_id: str
    score: float
    category_path: list[str]
    image_url: str


class SimilarOut(BaseModel):
    query: str
    k: int
    category: str | None
    model_version: int | None
    mode: Mode
    hits: list[HitOut]


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "prodcat_api_requests",
            "HTTP requests by route and status.",
            ["route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "prodcat_api_request_seconds",
            "HTTP request latency by route.",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )


def _hits(hits: list[Hit]) -> list[HitOut]:
    return [
        HitOut(
            product_id=h.product_id,
            score=h.score,
            category_path=list(h.category_path),
            image_url=h.image_url,
        )
        for h in hits
    ]


def neighbours_of_product(
    vectors: ProductVectors,
    product_id: str,
    k: int,
    category: str | None,
    exclude_self: bool,
    mode: Mode,
) -> list[Hit]:
    """The ``k`` neighbours of a stored product in ``mode`` (404 when it has no vector for it;
    hybrid with one side stored is answered by that side).

    Shared by the API and the web UI (:mod:`prodcat.serving.web`), so both answer the same way.
    """
    query = vectors.of_product(product_id, mode)
    if query.empty():
        what = {"image": "image vector", "text": "title vector"}.get(mode, "image or title vector")
        raise HTTPException(404, f"no {what} for product {product_id!r}")
    exclude = product_id if exclude_self else None
    return vectors.search(query, k, category_id=category, exclude=exclude, of=product_id)


def neighbours_of_words(
    vectors: ProductVectors, words: str, k: int, category: str | None
) -> list[Hit]:
    """Products whose titles read like ``words`` (422 when they hold no letter or digit; 404
    without title vectors)."""
    if not vectors.has_titles():
        raise HTTPException(
            404,
            "no title vectors to search: the embed stage stores them while "
            "PRODCAT_SIMILARITY__TEXT_VECTORS is true",
        )
    vector = vectors.title_vector(words)
    if vector is None:
        raise HTTPException(422, "the words have nothing to compare (no letters or digits)")
    return vectors.search(QueryVectors(text=vector), k, category_id=category)


def read_upload(image: UploadFile, max_bytes: int, max_pixels: int) -> bytes:
    """An uploaded file's bytes, at most ``max_bytes`` (413 beyond), sniffed as an image (415
    otherwise) of at most ``max_pixels`` pixels by its header (422 beyond, before decoding)."""
    data = image.file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise HTTPException(413, f"image larger than {max_bytes} bytes")
    if sniff_media_type(data) is None:
        raise HTTPException(415, "not an image (JPEG, PNG, GIF, WEBP or BMP)")
    try:
        check_pixels(data, max_pixels)
    except ImageTooLargeError as exc:
        raise HTTPException(422, f"image too large: {exc}") from exc
    return data


def api_key_check(key: str | None) -> Callable[[Any, Any], Refusal | None]:
    """A 401 for request headers without ``key`` (``X-API-Key`` or a bearer token); nothing
    refused when no key is configured."""
    expected = key.encode() if key else None

    def authorize(_scope: Any, headers: Any) -> Refusal | None:
        if expected is None:
            return None
        given = headers.get("x-api-key")
        if given is None:
            scheme, _, token = (headers.get("authorization") or "").partition(" ")
            given = token.strip() if scheme.lower() == "bearer" else None
        if given is not None and hmac.compare_digest(given.encode(), expected):
            return None
        return Refusal(401, "a valid API key is required", {"WWW-Authenticate": "Bearer"})

    return authorize


def neighbours_of_image(
    embedder: ModelBackend, vectors: ProductVectors, data: bytes, k: int, category: str | None
) -> tuple[list[Hit], int | None]:
    """Embed an image (422 when it cannot be decoded) and search: the hits and the embedder
    version that made the query vector."""
    try:
        output = embedder.predict({"image_bytes": np.array([data], dtype=object)})
    except ModelInputError as exc:
        raise HTTPException(422, f"the image cannot be decoded: {exc}") from exc
    vector = np.asarray(output.outputs["embedding"][0], dtype=np.float32)
    return vectors.search(QueryVectors(image=vector), k, category_id=category), output.version


def create_api(
    settings: ApiSettings,
    *,
    vectors: ProductVectors,
    embedder: ModelBackend,
    registry: CollectorRegistry | None = None,
    images: ImageSettings | None = None,
    subtrees: SubtreeIds | None = None,
) -> FastAPI:
    """The FastAPI app over ``vectors`` (image and title) and ``embedder`` (uploaded images).

    Without ``settings.key`` it is open to anyone who can reach it: keep it behind the UI's
    login or an authenticating ingress (see the module doc)."""
    metrics = ApiMetrics(registry or CollectorRegistry())
    subtree_ids = subtrees or SubtreeIds()

    def subtree(category: str | None) -> str | None:
        if category is None:
            return None
        resolved = subtree_ids.resolve(category)
        if resolved is None:
            raise HTTPException(
                404,
                f"unknown category {category!r}: use a c_… path id or a node id of the "
                "configured taxonomy (`prodcat taxonomy show`)",
            )
        return resolved

    max_pixels = (images or ImageSettings()).max_pixels
    app = FastAPI(title="prodcat similarity API", version="1")
    upload_limit = settings.max_upload_bytes + FORM_OVERHEAD_BYTES
    # Added first, so the metrics middleware below (the outer one) counts its refusals too.
    app.add_middleware(
        RequestGuard,
        body_limit=lambda method, path: upload_limit if method == "POST" else None,
        protected=lambda method, path: path.startswith("/v1/"),
        authorize=api_key_check(settings.key.get_secret_value() if settings.key else None),
        buckets=TokenBuckets(settings.rate_per_s, settings.rate_burst),
    )

    @app.middleware("http")
    async def observe(request: Request, call_next: Callable[[Request], Any]) -> Response:
        started = time.perf_counter()
        response: Response = await call_next(request)
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")
        metrics.latency.labels(name).observe(time.perf_counter() - started)
        metrics.requests.labels(name, str(response.status_code)).inc()
        return response

    @app.exception_handler(TransientError)
    async def unavailable(request: Request, exc: TransientError) -> Response:
        logger.warning("%s %s: %s", request.method, request.url.path, exc)
        return Response(
            '{"detail": "a backing service is unavailable"}',
            status_code=503,
            media_type="application/json",
            headers={"Retry-After": "5"},
        )

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        counts = vectors.count()
        return {"status": "ok", "vectors": counts["images"], "title_vectors": counts["texts"]}

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/similar/{product_id}", response_model=SimilarOut)
    def similar_to_product(
        product_id: str,
        k: K = 10,
        category: CATEGORY = None,
        exclude_self: bool = False,
        mode: MODE = None,
    ) -> SimilarOut:
        chosen = mode or vectors.settings.mode
        hits = neighbours_of_product(
            vectors, product_id, k, subtree(category), exclude_self, chosen
        )
        return SimilarOut(
            query=product_id,
            k=k,
            category=category,
            model_version=None,
            mode=chosen,
            hits=_hits(hits),
        )

    @app.get("/v1/search", response_model=SimilarOut)
    def search_words(q: WORDS, k: K = 10, category: CATEGORY = None) -> SimilarOut:
        hits = neighbours_of_words(vectors, q, k, subtree(category))
        return SimilarOut(
            query=q, k=k, category=category, model_version=None, mode="text", hits=_hits(hits)
        )

    @app.post("/v1/similar", response_model=SimilarOut)
    def similar_to_image(
        image: Annotated[UploadFile, File(description="a JPEG, PNG, GIF, WEBP or BMP image")],
        k: K = 10,
        category: CATEGORY = None,
    ) -> SimilarOut:
        data = read_upload(image, settings.max_upload_bytes, max_pixels)
        hits, version = neighbours_of_image(embedder, vectors, data, k, subtree(category))
        return SimilarOut(
            query=image.filename or "upload",
            k=k,
            category=category,
            model_version=version,
            mode="image",
            hits=_hits(hits),
        )

    return app
