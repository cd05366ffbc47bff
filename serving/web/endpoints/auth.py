"""Logging in and out: the login form (CSRF-checked, same-site, throttled per client and per name
by :class:`~prodcat.serving.web.auth.LoginThrottle`) and logout (which revokes the session)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Form, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from prodcat.serving.request_limits import client_of
from prodcat.serving.web.auth import cross_site, csrf_ok
from prodcat.serving.web.context import session_of
from prodcat.serving.web.dependencies import WEB, own_origin

logger = logging.getLogger(__name__)


def login_page(request: Request, web: WEB, next: str = "/annotate") -> HTMLResponse:
    return web.page(request, "login.html", next=safe_next(next), error=None)


def login(
    request: Request,
    web: WEB,
    name: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
    csrf_token: Annotated[str, Form(max_length=200)],
    next: Annotated[str, Form(max_length=500)] = "/annotate",
) -> Response:
    if cross_site(request.headers, own_origin(request)) or not csrf_ok(
        session_of(request), csrf_token
    ):
        raise HTTPException(403, "the form expired or came from another site; reload it")
    attempt = web.throttle.begin(client_of(request.scope), name)
    if attempt is None:
        response = web.page(
            request,
            "login.html",
            next=safe_next(next),
            error="Too many failed attempts; wait a minute.",
        )
        response.status_code = 429
        response.headers["Retry-After"] = "60"
        return response
    ok = False
    try:
        ok = web.parts.users.authenticate(name, password)
    finally:
        web.throttle.end(attempt, ok=ok)
    if not ok:
        response = web.page(
            request, "login.html", next=safe_next(next), error="Wrong name or password."
        )
        response.status_code = 401
        return response
    request.state.session = web.parts.codec.new(name)  # a fresh CSRF token at login
    request.state.set_cookie = True
    logger.info("ui: %s logged in", name)
    return RedirectResponse(safe_next(next), status_code=303)


def logout(
    request: Request, web: WEB, csrf_token: Annotated[str, Form(max_length=200)]
) -> Response:
    if not csrf_ok(session_of(request), csrf_token):
        raise HTTPException(403, "missing or wrong CSRF token")
    web.parts.codec.revoke(session_of(request))  # a copied cookie ends here too
    request.state.session = web.parts.codec.new(None)
    request.state.set_cookie = True
    return RedirectResponse("/login", status_code=303)


def safe_next(target: str) -> str:
    """Only local paths: ``next`` must not send a fresh login to another site."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/annotate"
    return target
