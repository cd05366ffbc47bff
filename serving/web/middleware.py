"""The web UI's HTTP middleware: the session cookie, security headers and request metrics.

Every request gets a session (the cookie's, or a fresh anonymous one, which is then set as the
cookie); a session of a removed account ends. Every response gets the Content-Security-Policy
(this origin only), ``nosniff``, ``same-origin`` referrers, no framing and, but for static files
and images, ``Cache-Control: no-store``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import Request, Response

from prodcat.serving.web.context import WebParts

COOKIE = "prodcat_session"
CSP = (
    "default-src 'self'; img-src 'self' blob:; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)
_CACHEABLE = ("/static/", "/img/")


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
