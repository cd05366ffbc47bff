"""The web UI's HTTP middleware: request limits, the session cookie, security headers, metrics.

**Before the body is read** (:func:`request_guard`, a
:class:`~prodcat.serving.request_limits.RequestGuard` outside everything else): an upload needs
a logged-in session (401) and its CSRF token from a same-site page (403), then at most
``max_upload_bytes`` (413, by ``Content-Length`` and by a running count); every other POST at
most :data:`FORM_LIMIT_BYTES`. So an anonymous upload never reaches the multipart parser, which
would spool it to disk.

Every request gets a session (the cookie's, or a fresh anonymous one, which is then set as the
cookie); a session of a removed account ends. Every response gets the Content-Security-Policy
(this origin only), ``nosniff``, ``same-origin`` referrers, no framing and, but for static files
and images, ``Cache-Control: no-store``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request, Response
from starlette.datastructures import Headers
from starlette.requests import cookie_parser

from prodcat.serving.request_limits import FORM_OVERHEAD_BYTES, Refusal
from prodcat.serving.web.auth import cross_site, csrf_ok
from prodcat.serving.web.context import WebParts

COOKIE = "prodcat_session"
CSP = (
    "default-src 'self'; img-src 'self' blob:; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)
_CACHEABLE = ("/static/", "/img/")
#: Routes taking an uploaded file.
UPLOAD_PATHS = frozenset({"/ui/api/similar"})
#: The largest body of any other POST (login, labels, judgements are a few hundred bytes).
FORM_LIMIT_BYTES = 256 * 1024


def request_guard(parts: WebParts) -> dict[str, Any]:
    """The options of the UI's :class:`~prodcat.serving.request_limits.RequestGuard`."""
    upload_limit = parts.settings.max_upload_bytes + FORM_OVERHEAD_BYTES

    def body_limit(method: str, path: str) -> int | None:
        if method != "POST":
            return None
        return upload_limit if path in UPLOAD_PATHS else FORM_LIMIT_BYTES

    def authorize(scope: Any, headers: Headers) -> Refusal | None:
        session = parts.codec.loads(cookie_parser(headers.get("cookie", "")).get(COOKIE))
        if session is None or session.user is None or not parts.users.exists(session.user):
            return Refusal(401, "log in first")
        origin = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"
        if cross_site(headers, origin):
            return Refusal(403, "cross-site request refused")
        if not csrf_ok(session, headers.get("x-csrf-token")):
            return Refusal(403, "missing or wrong CSRF token")
        return None

    return {
        "body_limit": body_limit,
        "protected": lambda method, path: method == "POST" and path in UPLOAD_PATHS,
        "authorize": authorize,
    }


class SessionsAndHeaders:
    """``app.middleware("http")`` dispatch over ``parts`` (codec, users, settings, metrics)."""

    def __init__(self, parts: WebParts) -> None:
        self.parts = parts

    async def __call__(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        parts = self.parts
        codec, ui, metrics = parts.codec, parts.settings, parts.metrics
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
        response = await call_next(request)
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
        if not request.url.path.startswith(_CACHEABLE):
            headers.setdefault("Cache-Control", "no-store")
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")
        metrics.http.latency.labels(name).observe(time.perf_counter() - started)
        metrics.http.requests.labels(name, str(response.status_code)).inc()
        return response
