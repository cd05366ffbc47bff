"""Refusing a request before its body is read: authorisation, rate and size, at the ASGI level.

FastAPI parses a multipart form (spooling files over 1 MB to disk) *before* it resolves an
endpoint's dependencies, so a check in a dependency comes after an anonymous upload reached disk.
:class:`RequestGuard` wraps the app and answers from the request line and headers alone:

1. ``401`` (or the :class:`Refusal` ``authorize`` returns: 403 for a missing CSRF token) when the
   request's headers do not authorise it (API key, session cookie) — nothing is read;
2. ``429`` when the client's token bucket (:class:`TokenBuckets`, bounded memory) is empty;
3. ``413`` when ``Content-Length`` exceeds the route's limit — nothing is read;
4. otherwise the body is passed on as the app reads it, counted: past the limit the app sees a
   disconnect and the client a ``413`` (a chunked upload without ``Content-Length`` included).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Room for the multipart boundaries and the other form fields around an uploaded file.
FORM_OVERHEAD_BYTES = 64 * 1024


class TokenBuckets:
    """A token bucket per client (``rate_per_s`` refill, ``burst`` capacity), for at most
    ``max_clients`` clients: the least recently seen is forgotten first (a forgotten client
    starts with a full bucket, which only ever favours it). Thread-safe."""

    def __init__(self, rate_per_s: float, burst: int, *, max_clients: int = 10_000) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, client: str, now: float | None = None) -> float:
        """Take a token for ``client``: 0.0 when granted, else the seconds until one is due."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, stamp = self._buckets.pop(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - stamp) * self.rate_per_s)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate_per_s
            self._buckets[client] = (tokens, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
            return wait

    def __len__(self) -> int:
        return len(self._buckets)


@dataclass(frozen=True)
class Refusal:
    """The answer to a request refused before its body is read."""

    status: int
    detail: str
    headers: Mapping[str, str] | None = None


def client_of(scope: Scope) -> str:
    """The peer address (behind a proxy: the address uvicorn's ``--proxy-headers`` put there)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class RequestGuard:
    """ASGI middleware: see the module doc. ``protected(method, path)`` says which requests need
    ``authorize(scope, headers)`` to return None (else its refusal is the answer);
    ``body_limit(method, path)`` the most body bytes accepted (``None``: no limit); ``buckets``
    rate-limits the protected requests per client."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        body_limit: Callable[[str, str], int | None],
        protected: Callable[[str, str], bool] = lambda method, path: False,
        authorize: Callable[[Scope, Headers], Refusal | None] = lambda scope, headers: None,
        buckets: TokenBuckets | None = None,
        on_refusal: Callable[[str, int], None] | None = None,
    ) -> None:
        self.app = app
        self.body_limit = body_limit
        self.protected = protected
        self.authorize = authorize
        self.buckets = buckets
        self.on_refusal = on_refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = str(scope["method"]), str(scope["path"])
        headers = Headers(scope=scope)
        limit = self.body_limit(method, path)
        refusal = self._refusal(scope, method, path, headers, limit)
        if refusal is not None:
            if self.on_refusal is not None:
                self.on_refusal(path, refusal.status)
            await _respond(send, refusal)
            return
        if limit is None:
            await self.app(scope, receive, send)
            return
        await self._counted(scope, receive, send, limit)

    def _refusal(
        self, scope: Scope, method: str, path: str, headers: Headers, limit: int | None
    ) -> Refusal | None:
        if self.protected(method, path):
            refused = self.authorize(scope, headers)
            if refused is not None:
                return refused
            if self.buckets is not None:
                wait = self.buckets.take(client_of(scope))
                if wait > 0:
                    return Refusal(429, "too many requests", {"Retry-After": str(math.ceil(wait))})
        if limit is not None:
            length = headers.get("content-length")
            if length is not None:
                try:
                    declared = int(length)
                except ValueError:
                    return Refusal(400, "bad Content-Length")
                if declared > limit:
                    return Refusal(413, f"request body larger than {limit} bytes")
        return None

    async def _counted(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        received = 0
        over = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over:  # the app's answer to a cut-off body is replaced by the 413
                return
            started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not over:
                raise
        if over and not started:
            if self.on_refusal is not None:
                self.on_refusal(str(scope["path"]), 413)
            await _respond(send, Refusal(413, f"request body larger than {limit} bytes"))


async def _respond(send: Send, refusal: Refusal) -> None:
    body = json.dumps({"detail": refusal.detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in (refusal.headers or {}).items()]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
