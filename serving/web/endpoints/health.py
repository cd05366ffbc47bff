"""``/healthz`` (ready once the view has caught up with the topics) and ``/metrics``."""

from __future__ import annotations

import time

from fastapi import Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from prodcat.serving.web.annotation import LABELLED_ACCURACY_WINDOW_MS
from prodcat.serving.web.dependencies import WEB


def healthz(web: WEB) -> JSONResponse:
    follower = web.parts.follower
    ready = follower is None or follower.ready.is_set()
    body = {"status": "ok" if ready else "catching_up", "ready": ready}
    return JSONResponse(body, status_code=200 if ready else 503)


def prometheus(web: WEB) -> Response:
    # the queue depth, held labels and labelled accuracy are read at scrape time
    annotation = web.parts.annotation
    annotation.depth()
    annotation.labelled_accuracy(time.time_ns() // 1_000_000 - LABELLED_ACCURACY_WINDOW_MS)
    if web.parts.review is not None:
        web.parts.review.counts()
    return Response(generate_latest(web.parts.metrics.registry), media_type=CONTENT_TYPE_LATEST)
