"""The web UI's error handlers, as a table from error class to handler (MLServer's
``rest/errors.py``).

==========================================  ===================================================
error                                       answer
==========================================  ===================================================
``HTTPException`` 401 outside ``/ui/api/``  303 to ``/login?next=<the page>``
``HTTPException`` (any other)               its status, ``{"detail": ...}`` and its headers
:class:`~.exceptions.ConflictError`         409 ``{"detail": ...}``
:class:`~.exceptions.InvalidInputError`     422 ``{"detail": ...}``
:class:`~.exceptions.PublishError`,         503 ``{"detail": "not saved, ..."}``,
:class:`~prodcat.core.errors.TransientError`  ``Retry-After: 5``, logged
==========================================  ===================================================

Other errors (:class:`~.exceptions.AuthError` included) are not answered here: FastAPI's
defaults apply (a 500).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any, Final
from urllib.parse import quote

from fastapi import HTTPException, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from prodcat.serving.exceptions import TransientError
from prodcat.serving.web.exceptions import ConflictError, InvalidInputError, PublishError

__all__ = ["EXCEPTION_HANDLERS"]

logger = logging.getLogger(__name__)

Handler = Callable[[Request, Any], Coroutine[Any, Any, Response]]


async def http_error(request: Request, exc: HTTPException) -> Response:
    """A 401 of a page sends the browser to log in; other HTTP errors are answered as JSON."""
    if exc.status_code == 401 and not request.url.path.startswith("/ui/api/"):
        target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        return RedirectResponse(f"/login?next={target}", status_code=303)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def conflict(_request: Request, exc: ConflictError) -> Response:
    return JSONResponse({"detail": str(exc)}, status_code=409)


async def invalid(_request: Request, exc: InvalidInputError) -> Response:
    return JSONResponse({"detail": str(exc)}, status_code=422)


async def unavailable(request: Request, exc: Exception) -> Response:
    """Kafka or another backing service did not answer: nothing was saved, retry shortly."""
    logger.warning("%s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(
        {"detail": f"not saved, a backing service is unavailable: {exc}"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


EXCEPTION_HANDLERS: Final[dict[int | type[Exception], Handler]] = {
    HTTPException: http_error,
    ConflictError: conflict,
    InvalidInputError: invalid,
    PublishError: unavailable,
    TransientError: unavailable,
}
