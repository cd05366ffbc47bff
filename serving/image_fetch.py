"""Fetching product images: a security boundary (docs/architecture.md, "Images").

:class:`ImageFetcher` fetches ``http``, ``https`` and (inside configured roots) ``file`` URLs. Every
hop of a redirect chain is re-checked against the address guard of :mod:`prodcat.serving.url_guard`, whose
resolver sits inside the aiohttp connector so that only checked addresses are ever connected to.
Sizes, pixel dimensions (read from the header, before any decoding:
:mod:`prodcat.core.image_header`) and the time per try are bounded, and the media type comes
from the bytes themselves, never from ``Content-Type``. Every failure is an
:class:`ImageFetchError` whose ``kind`` is the dead-letter reason. A transient failure (timeout,
connection error, HTTP 429 or 5xx) is tried again ``retries`` times, waiting ``retry_backoff_s``
doubled each time (or the server's ``Retry-After``), at most ``max_retry_wait_s``; only then is it an error.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import aiohttp
from yarl import URL

from prodcat.core.image_header import ImageTooLargeError, check_pixels
from prodcat.core.settings import ImageSettings
from prodcat.serving.exceptions import ImageFetchError
from prodcat.serving.url_guard import AddressPolicy, GuardedResolver, parse_ip_host

logger = logging.getLogger(__name__)

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
_HEADERS = {"User-Agent": "prodcat-image-fetcher/1", "Accept": "image/*"}
_SECURITY_KINDS = frozenset({"address_not_allowed", "scheme_not_allowed"})
_BMP_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})


@dataclass(frozen=True)
class FetchedImage:
    """An image's bytes with the URL asked for, the URL finally read and the sniffed media type."""

    url: str
    final_url: str
    media_type: str
    data: bytes


def sniff_media_type(data: bytes) -> str | None:
    """The image media type the magic bytes of ``data`` announce, or ``None`` if not an image."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image/webp"
    if (
        data.startswith(b"BM")
        and len(data) >= 26
        and int.from_bytes(data[14:18], "little") in _BMP_HEADER_SIZES
    ):
        return "image/bmp"
    return None


def guarded_session(settings: ImageSettings) -> aiohttp.ClientSession:
    """A session that connects only to addresses the guard allows; call it in a running loop.

    No proxies from the environment (the guard would check the proxy, not the target) and no cookies.
    """
    resolver = GuardedResolver(AddressPolicy.from_allowed(settings.allowed_hosts))
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(resolver=resolver, limit=settings.concurrency),
        timeout=aiohttp.ClientTimeout(total=settings.timeout_s),
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        headers=_HEADERS,
    )


_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def _error(
    kind: str, message: str, *, transient: bool = False, retry_after: float | None = None
) -> ImageFetchError:
    level = logging.WARNING if kind in _SECURITY_KINDS else logging.INFO
    logger.log(level, "image fetch refused (%s): %s", kind, message)
    return ImageFetchError(kind, message, transient=transient, retry_after=retry_after)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header given in seconds (an HTTP date is ignored)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


class ImageFetcher:
    """Fetches product images under :class:`ImageSettings`; an async context manager.

    It owns its session unless one is injected; an injected session must come from
    :func:`guarded_session` (its connector's resolver is the guard) and must not trust the
    environment's proxy settings.
    """

    def __init__(
        self, settings: ImageSettings, *, session: aiohttp.ClientSession | None = None
    ) -> None:
        if session is not None:
            resolver = getattr(session.connector, "_resolver", None)
            if not isinstance(resolver, GuardedResolver) or session.trust_env:
                raise ValueError("an injected session must come from guarded_session()")
        self._settings = settings
        self._policy = AddressPolicy.from_allowed(settings.allowed_hosts)
        self._roots = tuple(Path(root).resolve() for root in settings.file_roots)
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> Self:
        if self._session is None:
            self._session = guarded_session(self._settings)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch(self, url: str) -> FetchedImage:
        """Fetch one image, following redirects, trying again after a transient failure; raises
        :class:`ImageFetchError`."""
        cfg = self._settings
        tries = 0
        while True:
            tries += 1
            try:
                return await self._try(url)
            except ImageFetchError as exc:
                if not exc.transient or tries > cfg.retries:
                    if tries > 1:
                        raise ImageFetchError(
                            exc.kind, f"{exc} (after {tries} tries)", transient=exc.transient
                        ) from exc
                    raise
                wait = cfg.retry_backoff_s * 2 ** (tries - 1)
                if exc.retry_after is not None:
                    wait = max(wait, exc.retry_after)
                wait = min(wait, cfg.max_retry_wait_s)
                logger.info("image fetch: %s; try %d in %.1fs", exc, tries + 1, wait)
                await asyncio.sleep(wait)

    async def _try(self, url: str) -> FetchedImage:
        try:
            async with asyncio.timeout(self._settings.timeout_s):
                return await self._fetch(url)
        except TimeoutError as exc:
            raise _error(
                "timeout", f"{url!r}: no image within {self._settings.timeout_s}s", transient=True
            ) from exc

    async def fetch_many(self, urls: Iterable[str]) -> list[FetchedImage | ImageFetchError]:
        """Fetch images ``concurrency`` at a time; results and errors in the order of ``urls``."""
        semaphore = asyncio.Semaphore(self._settings.concurrency)

        async def one(url: str) -> FetchedImage | ImageFetchError:
            async with semaphore:
                try:
                    return await self.fetch(url)
                except ImageFetchError as exc:
                    return exc

        return list(await asyncio.gather(*(one(url) for url in urls)))

    async def _fetch(self, url: str) -> FetchedImage:
        try:
            target = self._check_url(URL(url), redirect=False)
        except (TypeError, ValueError) as exc:
            raise _error("bad_url", f"{url!r} is not a URL: {exc}") from exc
        if target.scheme == "file":
            final, data = await asyncio.to_thread(self._read_file, target)
            return self._image(url, final, data)
        hops = 0
        while True:
            result = await self._get(target)
            if isinstance(result, bytes):
                return self._image(url, str(target), result)
            if hops >= self._settings.max_redirects:
                raise _error("too_many_redirects", f"{url!r}: more than {hops} redirects")
            hops += 1
            target = self._check_url(result, redirect=True)

    def _check_url(self, url: URL, *, redirect: bool) -> URL:
        """Check scheme, host and address of one hop (names are checked again by the resolver)."""
        scheme = url.scheme.lower()
        if not scheme:
            raise _error("bad_url", f"{str(url)!r} is not an absolute URL")
        if scheme == "file" and not redirect and self._roots:
            return url
        if scheme not in ("http", "https"):
            where = "a redirect to " if redirect else ""
            raise _error("scheme_not_allowed", f"{where}{scheme}: URLs are not fetched: {url}")
        host = url.raw_host
        if not host:
            raise _error("bad_url", f"{str(url)!r} has no host")
        if url.raw_user is not None or url.raw_password is not None:
            raise _error("bad_url", f"{url.with_user(None)} carries credentials")
        if self._policy.name_allowed(host):
            return url
        literal = parse_ip_host(host)
        if literal is None:
            reason = self._policy.name_refusal(host)
        else:
            reason = self._policy.address_refusal(literal[0])
        if reason is not None:
            raise _error("address_not_allowed", f"{url}: {host}: {reason}")
        if literal is not None and not literal[1]:
            raise _error("bad_url", f"{url}: {host} is not a canonical IP address")
        return url

    async def _get(self, target: URL) -> URL | bytes:
        """One request: the body of a 2xx answer or the target of a redirect."""
        if self._session is None:
            raise RuntimeError("use ImageFetcher as an async context manager")
        try:
            async with self._session.get(target, allow_redirects=False) as resp:
                if resp.status in _REDIRECTS:
                    return self._redirect_target(target, resp)
                if resp.status in (404, 410):
                    raise _error("not_found", f"{target}: HTTP {resp.status}")
                if resp.status in _RETRY_STATUSES:
                    raise _error(
                        "http_status",
                        f"{target}: HTTP {resp.status}",
                        transient=True,
                        retry_after=_retry_after(resp.headers.get("Retry-After")),
                    )
                if not 200 <= resp.status < 300:
                    raise _error("http_status", f"{target}: HTTP {resp.status}")
                return await self._read_body(target, resp)
        except (ImageFetchError, TimeoutError):
            raise
        except aiohttp.InvalidURL as exc:
            raise _error("bad_url", f"{target}: {exc}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise _error(
                "connection", f"{target}: {type(exc).__name__}: {exc}", transient=True
            ) from exc

    def _redirect_target(self, target: URL, resp: aiohttp.ClientResponse) -> URL:
        location = resp.headers.get("Location")
        if not location:
            raise _error("http_status", f"{target}: HTTP {resp.status} without Location")
        try:
            return target.join(URL(location))
        except (TypeError, ValueError) as exc:
            raise _error("bad_url", f"{target}: bad redirect {location!r}") from exc

    async def _read_body(self, target: URL, resp: aiohttp.ClientResponse) -> bytes:
        limit = self._settings.max_bytes
        if resp.content_length is not None and resp.content_length > limit:
            raise _error("too_large", f"{target}: Content-Length {resp.content_length} > {limit}")
        body = bytearray()
        async for chunk in resp.content.iter_chunked(_CHUNK):
            body += chunk
            if len(body) > limit:
                raise _error("too_large", f"{target}: body exceeds {limit} bytes")
        return bytes(body)

    def _read_file(self, url: URL) -> tuple[str, bytes]:
        """Read a file:// URL inside one of the roots (blocking: run it in a thread)."""
        path = url.path
        if url.raw_host not in (None, "", "localhost") or not path.startswith("/") or "\0" in path:
            raise _error("bad_url", f"{str(url)!r} is not a local absolute file URL")
        try:
            resolved = Path(path).resolve()
        except (OSError, RuntimeError) as exc:  # a symlink loop
            raise _error("not_found", f"{url}: {exc}") from exc
        if not any(resolved.is_relative_to(root) for root in self._roots):
            raise _error("address_not_allowed", f"{url}: outside the file roots")
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(resolved, flags)
        except OSError as exc:
            raise _error("not_found", f"{url}: {exc.strerror}") from exc
        limit = self._settings.max_bytes
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise _error("not_found", f"{url}: not a regular file")
            with open(fd, "rb", closefd=False) as fh:
                data = fh.read(limit + 1)
        finally:
            os.close(fd)
        if len(data) > limit:
            raise _error("too_large", f"{url}: file exceeds {limit} bytes")
        return resolved.as_uri(), data

    def _image(self, url: str, final_url: str, data: bytes) -> FetchedImage:
        media_type = sniff_media_type(data)
        if media_type is None:
            raise _error("not_image", f"{final_url}: {data[:16]!r} is not a known image format")
        try:  # from the header only: a decompression bomb is never decoded
            check_pixels(data, self._settings.max_pixels)
        except ImageTooLargeError as exc:
            raise _error("too_large_pixels", f"{final_url}: {exc}") from exc
        return FetchedImage(url=url, final_url=final_url, media_type=media_type, data=data)
