"""FastAPI dependencies of the web UI: the app's context, the annotator, the CSRF-checked writer,
and the shared query parameter types."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request

from prodcat.core.ids import CATEGORY_ID_PATTERN
from prodcat.serving.web.auth import cross_site, csrf_ok
from prodcat.serving.web.context import WebContext, session_of

STRATEGY = Annotated[str | None, Query(max_length=40, pattern=r"^[a-z_]*$")]
CATEGORY = Annotated[str | None, Query(pattern=f"^({CATEGORY_ID_PATTERN})?$")]
SEARCH = Annotated[str, Query(max_length=200)]


def own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"


async def web(request: Request) -> WebContext:
    """The context of the app serving ``request`` (see :func:`~prodcat.serving.web.app.create_web_app`)."""
    context: WebContext = request.app.state.web
    return context


def annotator(request: Request) -> str:
    """The logged-in annotator (401 otherwise)."""
    user = session_of(request).user
    if user is None:
        raise HTTPException(401, "log in first")
    return user


def writer(request: Request, user: Annotated[str, Depends(annotator)]) -> str:
    """The logged-in annotator of a same-site request carrying the session's CSRF token."""
    if cross_site(request.headers, own_origin(request)):
        raise HTTPException(403, "cross-site request refused")
    if not csrf_ok(session_of(request), request.headers.get("x-csrf-token")):
        raise HTTPException(403, "missing or wrong CSRF token")
    return user


WEB = Annotated[WebContext, Depends(web)]
ANNOTATOR = Annotated[str, Depends(annotator)]
WRITER = Annotated[str, Depends(writer)]
