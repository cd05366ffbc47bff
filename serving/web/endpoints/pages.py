"""The server-rendered pages: annotate, progress, similar, report, mappings, taxonomy and review
(``/`` goes to annotate)."""

from __future__ import annotations

import time

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse

from prodcat.serving.web.dependencies import ANNOTATOR, STRATEGY, WEB
from prodcat.serving.web.mappings import SORTS
from prodcat.serving.web.report import KS, precision_report
from prodcat.serving.web.view import UNCERTAINTY


def home() -> RedirectResponse:
    return RedirectResponse("/annotate", status_code=303)


def annotate_page(
    request: Request, web: WEB, user: ANNOTATOR, strategy: STRATEGY = None
) -> HTMLResponse:
    strategies = web.parts.view.strategies()
    return web.page(
        request,
        "annotate.html",
        strategies=strategies,
        strategy=strategy or "",
        uncertainty=UNCERTAINTY,
        depth=web.parts.annotation.depth(),
    )


def progress_page(request: Request, web: WEB, user: ANNOTATOR) -> HTMLResponse:
    now_ms = time.time_ns() // 1_000_000
    hour_now = now_ms // 3_600_000
    stats = web.parts.view.label_stats((hour_now - 23) * 3_600_000)
    hours = [
        {
            "hour": time.strftime("%H:00", time.localtime(h * 3600)),
            "n": stats["hours"].get(h, 0),
        }
        for h in range(hour_now - 23, hour_now + 1)
    ]
    depth = web.parts.annotation.depth()
    return web.page(
        request,
        "progress.html",
        hours=hours,
        peak=max([1, *(h["n"] for h in hours)]),
        depth=depth,
        depth_peak=max([1, *depth.values()]),
        strategies=stats["strategies"],
        annotators=stats["annotators"],
        leased=web.parts.annotation.leases.leased_count(),
        agreement=web.parts.annotation.agreement(),
        stability=web.parts.annotation.stability(),
        double_share=web.ui.double_label_share,
    )


def similar_page(request: Request, web: WEB, user: ANNOTATOR) -> HTMLResponse:
    return web.page(
        request,
        "similar.html",
        neighbours=web.ui.neighbours,
        max_upload=web.ui.max_upload_bytes,
        mode=web.parts.similarity.mode,
    )


def report_page(request: Request, web: WEB, user: ANNOTATOR) -> HTMLResponse:
    view = web.parts.view
    reports = precision_report(view.judged_pairs())
    return web.page(
        request, "report.html", reports=reports, ks=KS, judgements=view.judgement_count()
    )


def mappings_page(request: Request, web: WEB, user: ANNOTATOR) -> HTMLResponse:
    """The table itself is fetched by ``mappings.js`` (``/ui/api/mappings``)."""
    return web.page(request, "mappings.html", feeds=web.parts.view.feeds(), sorts=SORTS)


def taxonomy_page(request: Request, web: WEB, user: ANNOTATOR) -> HTMLResponse:
    """Nodes and changes are fetched by ``taxonomy.js`` (``/ui/api/taxonomy/...``)."""
    return web.page(request, "taxonomy.html", can_edit=web.parts.taxonomy.can_edit(user))


def review_page(request: Request, web: WEB, user: ANNOTATOR) -> HTMLResponse:
    """The held labels are fetched by ``review.js`` (``/ui/api/review``)."""
    return web.page(request, "review.html")
