"""The image fetcher against real HTTP servers on loopback, and the address guard's policy table."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from prodcat.core.settings import ImageSettings
from prodcat.serving.exceptions import ImageFetchError
from prodcat.serving.image_fetch import (
    FetchedImage,
    ImageFetcher,
    guarded_session,
    sniff_media_type,
)
from prodcat.serving.url_guard import AddressPolicy, GuardedResolver, blocked_reason, parse_ip_host

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MAX_BYTES = 64 * 1024
HTML = b"<!doctype html><html><body>Not Found</body></html>"


@pytest.fixture
def jpeg(data_dir: Path) -> bytes:
    return (data_dir / "myntra" / "images" / "10008.jpg").read_bytes()


@pytest.fixture
async def server(jpeg: bytes) -> AsyncIterator[str]:
    """A real aiohttp server on 127.0.0.1; yields its base URL."""
    release = asyncio.Event()

    async def image(request: web.Request) -> web.StreamResponse:
        return web.Response(body=jpeg, content_type="application/octet-stream")

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(request.query["to"])

    async def chain(request: web.Request) -> web.StreamResponse:
        hops = int(request.match_info["n"])
        raise web.HTTPFound(f"/chain/{hops - 1}" if hops else "/img.jpg")

    async def big(request: web.Request) -> web.StreamResponse:
        return web.Response(body=jpeg + b"\0" * MAX_BYTES, content_type="image/jpeg")

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(jpeg)
        for _ in range(2 * MAX_BYTES // 4096):
            await resp.write(b"\0" * 4096)
        await resp.write_eof()
        return resp

    async def slow(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.Response(body=jpeg)

    async def drip(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        await resp.prepare(request)
        for byte in jpeg:
            await resp.write(bytes([byte]))
            if not release.is_set():
                await asyncio.sleep(0.05)
        return resp

    async def liar(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        resp.content_length = 10**9
        await resp.prepare(request)
        await resp.write(jpeg)
        await release.wait()
        return resp

    async def slow_chain(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.3)
        hops = int(request.match_info["n"])
        raise web.HTTPFound(f"/slowchain/{hops - 1}" if hops else "/img.jpg")

    async def status(request: web.Request) -> web.StreamResponse:
        return web.Response(status=int(request.match_info["code"]), body=b"nope")

    async def html(request: web.Request) -> web.StreamResponse:
        return web.Response(body=HTML, content_type="image/jpeg")

    failures: dict[str, int] = {}

    async def flaky(request: web.Request) -> web.StreamResponse:
        """Fails ``n`` times per name with ``code`` (and Retry-After ``after``), then serves."""
        name, n = request.match_info["name"], int(request.query["n"])
        failures[name] = failures.get(name, 0) + 1
        if failures[name] <= n:
            headers = {"Retry-After": request.query["after"]} if "after" in request.query else {}
            return web.Response(status=int(request.query["code"]), headers=headers)
        return web.Response(body=jpeg, headers={"X-Tries": str(failures[name])})

    app = web.Application()
    app.router.add_get("/img.jpg", image)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/chain/{n}", chain)
    app.router.add_get("/big.jpg", big)
    app.router.add_get("/chunked.jpg", chunked)
    app.router.add_get("/slow.jpg", slow)
    app.router.add_get("/drip.jpg", drip)
    app.router.add_get("/liar.jpg", liar)
    app.router.add_get("/slowchain/{n}", slow_chain)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/html.jpg", html)
    app.router.add_get("/flaky/{name}", flaky)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        release.set()
        await runner.cleanup()


def settings(**overrides: Any) -> ImageSettings:
    values: dict[str, Any] = {
        "max_bytes": MAX_BYTES,
        "timeout_s": 2.0,
        "max_redirects": 2,
        "retries": 0,  # one try each, unless a test is about retrying
    }
    values.update(overrides)
    return ImageSettings(**values)


ALLOW_LOOPBACK = settings(allowed_hosts=("127.0.0.1",))


async def fetch_error(fetcher_settings: ImageSettings, url: str) -> ImageFetchError:
    async with ImageFetcher(fetcher_settings) as fetcher:
        with pytest.raises(ImageFetchError) as info:
            await fetcher.fetch(url)
    return info.value


@pytest.fixture
async def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fail on any DNS lookup or connect from this test's loop; lists what was attempted."""
    attempts: list[str] = []
    loop = asyncio.get_running_loop()

    async def refuse(*args: object, **kwargs: object) -> Any:
        attempts.append(repr(args[:2]))
        raise AssertionError(f"network used: {args!r}")

    for name in ("getaddrinfo", "sock_connect", "create_connection"):
        monkeypatch.setattr(loop, name, refuse)
    return attempts


# --- the address guard, refusing before any connection -------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/x.jpg",
        "http://localhost:{port}/",
        "http://LOCALHOST.:{port}/",
        "http://2130706433:{port}/",
        "http://0x7f.1:{port}/",
        "http://0x7f000001:{port}/",
        "http://017700000001:{port}/",
        "http://127.1:{port}/",
        "http://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54:{port}/",  # fullwidth
        "http://127\u30020\u30020\u30021/",  # ideographic full stops
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "http://172.16.0.1/",
        "http://100.64.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[64:ff9b::a00:1]/",
        "http://[fe80::1%25eth0]/",
        "http://[fd00::1]/",
        "http://0.0.0.0/",
        "http://[::]/",
        "http://224.0.0.1/",
        "https://255.255.255.255/",
    ],
)
async def test_guard_refuses_without_connecting(url: str, no_network: list[str]) -> None:
    started = time.monotonic()
    error = await fetch_error(settings(), url.format(port=9))
    assert error.kind == "address_not_allowed", error
    assert no_network == []
    assert time.monotonic() - started < 0.5


async def test_loopback_server_refused_by_default(server: str) -> None:
    port = server.rsplit(":", 1)[1]
    for url in (f"{server}/img.jpg", f"http://localhost:{port}/img.jpg"):
        assert (await fetch_error(settings(), url)).kind == "address_not_allowed"


async def test_allow_listed_loopback_fetches_jpeg(server: str, jpeg: bytes) -> None:
    for allowed in ("127.0.0.1", "127.0.0.0/8"):
        async with ImageFetcher(settings(allowed_hosts=(allowed,))) as fetcher:
            image = await fetcher.fetch(f"{server}/img.jpg")
        assert image == FetchedImage(f"{server}/img.jpg", f"{server}/img.jpg", "image/jpeg", jpeg)


async def test_non_canonical_spelling_of_allowed_address_is_a_bad_url(server: str) -> None:
    port = server.rsplit(":", 1)[1]
    assert (await fetch_error(ALLOW_LOOPBACK, f"http://2130706433:{port}/")).kind == "bad_url"


# --- redirects ----------------------------------------------------------------------------------


async def test_redirect_followed_and_final_url_reported(server: str) -> None:
    async with ImageFetcher(ALLOW_LOOPBACK) as fetcher:
        image = await fetcher.fetch(f"{server}/chain/1")
    assert image.url == f"{server}/chain/1"
    assert image.final_url == f"{server}/img.jpg"


@pytest.mark.parametrize(
    ("target", "kind"),
    [
        ("http://10.1.2.3/x.jpg", "address_not_allowed"),
        ("http://169.254.169.254/latest/meta-data/", "address_not_allowed"),
        ("http://[::ffff:10.0.0.1]/", "address_not_allowed"),
        ("http://localhost/x.jpg", "address_not_allowed"),
        ("file:///etc/passwd", "scheme_not_allowed"),
        ("file://{root}/img.jpg", "scheme_not_allowed"),
        ("ftp://example.com/x.jpg", "scheme_not_allowed"),
    ],
)
async def test_redirect_hops_are_rechecked(
    server: str, tmp_path: Path, jpeg: bytes, target: str, kind: str
) -> None:
    (tmp_path / "img.jpg").write_bytes(jpeg)
    hop = target.format(root=tmp_path)
    url = str(URL(f"{server}/redirect").with_query(to=hop))
    fetcher_settings = settings(allowed_hosts=("127.0.0.1",), file_roots=(tmp_path,))
    assert (await fetch_error(fetcher_settings, url)).kind == kind


async def test_redirect_chain_longer_than_max(server: str) -> None:
    async with ImageFetcher(ALLOW_LOOPBACK) as fetcher:  # max_redirects=2
        assert (await fetcher.fetch(f"{server}/chain/1")).media_type == "image/jpeg"
        with pytest.raises(ImageFetchError) as info:
            await fetcher.fetch(f"{server}/chain/2")
    assert info.value.kind == "too_many_redirects"


# --- limits, status codes, content ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/big.jpg", "too_large"),
        ("/chunked.jpg", "too_large"),
        ("/status/404", "not_found"),
        ("/status/500", "http_status"),
        ("/status/403", "http_status"),
        ("/html.jpg", "not_image"),
    ],
)
async def test_limits_and_status(server: str, path: str, kind: str) -> None:
    assert (await fetch_error(ALLOW_LOOPBACK, f"{server}{path}")).kind == kind


@pytest.mark.parametrize("code", [503, 429, 500])
async def test_transient_statuses_are_tried_again(server: str, jpeg: bytes, code: int) -> None:
    retrying = settings(allowed_hosts=("127.0.0.1",), retries=2, retry_backoff_s=0.05)
    async with ImageFetcher(retrying) as fetcher:
        image = await fetcher.fetch(f"{server}/flaky/s{code}?n=2&code={code}")
    assert image.data == jpeg
    error = await fetch_error(retrying, f"{server}/flaky/f{code}?n=3&code={code}")
    assert error.kind == "http_status" and "after 3 tries" in str(error)


async def test_retry_after_is_honoured_and_bounded(server: str) -> None:
    retrying = settings(allowed_hosts=("127.0.0.1",), retries=1, retry_backoff_s=0.0)
    started = time.monotonic()
    async with ImageFetcher(retrying) as fetcher:
        await fetcher.fetch(f"{server}/flaky/ra?n=1&code=429&after=0.4")
    assert time.monotonic() - started >= 0.4
    capped = settings(
        allowed_hosts=("127.0.0.1",), retries=1, retry_backoff_s=0.0, max_retry_wait_s=0.1
    )
    started = time.monotonic()
    async with ImageFetcher(capped) as fetcher:
        await fetcher.fetch(f"{server}/flaky/cap?n=1&code=503&after=30")
    assert time.monotonic() - started < 1.0


async def test_permanent_failures_are_not_tried_again(server: str) -> None:
    retrying = settings(allowed_hosts=("127.0.0.1",), retries=3, retry_backoff_s=0.05)
    error = await fetch_error(retrying, f"{server}/flaky/p404?n=1&code=404")
    assert error.kind == "not_found" and "tries" not in str(error)
    async with ImageFetcher(retrying) as fetcher:  # the server saw one request, so this is the 2nd
        await fetcher.fetch(f"{server}/flaky/p404?n=1&code=404")


async def test_timeouts_and_refused_connections_are_tried_again(server: str) -> None:
    retrying = settings(allowed_hosts=("127.0.0.1",), retries=1, retry_backoff_s=0.0, timeout_s=0.3)
    error = await fetch_error(retrying, f"{server}/slow.jpg")
    assert error.kind == "timeout" and "after 2 tries" in str(error)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    error = await fetch_error(retrying, f"http://127.0.0.1:{port}/x.jpg")
    assert error.kind == "connection" and "after 2 tries" in str(error)


async def test_content_length_too_big_refused_before_reading(server: str) -> None:
    started = time.monotonic()
    assert (await fetch_error(ALLOW_LOOPBACK, f"{server}/liar.jpg")).kind == "too_large"
    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize("path", ["/slow.jpg", "/drip.jpg", "/slowchain/1"])
async def test_total_timeout(server: str, path: str) -> None:
    started = time.monotonic()
    error = await fetch_error(
        settings(allowed_hosts=("127.0.0.1",), timeout_s=0.5), f"{server}{path}"
    )
    assert error.kind == "timeout"
    assert 0.4 < time.monotonic() - started < 1.5


async def test_closed_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    error = await fetch_error(ALLOW_LOOPBACK, f"http://127.0.0.1:{port}/x.jpg")
    assert error.kind == "connection"


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("ftp://example.com/x.jpg", "scheme_not_allowed"),
        ("gopher://example.com/", "scheme_not_allowed"),
        ("data:image/png;base64,iVBORw0KGgo=", "scheme_not_allowed"),
        ("javascript:alert(1)", "scheme_not_allowed"),
        ("file:///etc/passwd", "scheme_not_allowed"),  # no file roots configured
        ("", "bad_url"),
        ("/img.jpg", "bad_url"),
        ("//example.com/img.jpg", "bad_url"),
        ("http:///img.jpg", "bad_url"),
        ("http://user:secret@example.com/img.jpg", "bad_url"),
    ],
)
async def test_bad_urls_and_schemes(url: str, kind: str, no_network: list[str]) -> None:
    assert (await fetch_error(settings(), url)).kind == kind
    assert no_network == []


# --- file:// ---------------------------------------------------------------------------------


@pytest.fixture
def roots(tmp_path: Path, jpeg: bytes) -> tuple[Path, Path]:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "sub" / "a.jpg").write_bytes(jpeg)
    (root / "big.jpg").write_bytes(jpeg + b"\0" * MAX_BYTES)
    (root / "page.jpg").write_bytes(HTML)
    (outside / "secret.jpg").write_bytes(jpeg)
    (root / "escape.jpg").symlink_to(outside / "secret.jpg")
    (root / "inner.jpg").symlink_to(root / "sub" / "a.jpg")
    (root / "outdir").symlink_to(outside)
    return root, outside


async def test_file_inside_root(roots: tuple[Path, Path], jpeg: bytes) -> None:
    root, _ = roots
    async with ImageFetcher(settings(file_roots=(root,))) as fetcher:
        image = await fetcher.fetch(f"file://{root}/sub/a.jpg")
        via_link = await fetcher.fetch(f"file://{root}/inner.jpg")
    assert (image.media_type, image.data) == ("image/jpeg", jpeg)
    assert via_link.final_url == (root / "sub" / "a.jpg").as_uri()


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("{outside}/secret.jpg", "address_not_allowed"),
        ("{root}/sub/../../outside/secret.jpg", "address_not_allowed"),
        ("{root}/sub/%2e%2e/%2e%2e/outside/secret.jpg", "address_not_allowed"),
        ("{root}/escape.jpg", "address_not_allowed"),
        ("{root}/outdir/secret.jpg", "address_not_allowed"),
        ("/etc/passwd", "address_not_allowed"),
        ("/dev/zero", "address_not_allowed"),
        ("{root}/missing.jpg", "not_found"),
        ("{root}/sub", "not_found"),
        ("{root}/big.jpg", "too_large"),
        ("{root}/page.jpg", "not_image"),
    ],
)
async def test_file_refusals(roots: tuple[Path, Path], path: str, kind: str) -> None:
    root, outside = roots
    url = "file://" + path.format(root=root, outside=outside)
    assert (await fetch_error(settings(file_roots=(root,)), url)).kind == kind


async def test_file_with_remote_host_refused(roots: tuple[Path, Path]) -> None:
    root, _ = roots
    url = f"file://example.com{root}/sub/a.jpg"
    assert (await fetch_error(settings(file_roots=(root,)), url)).kind == "bad_url"


# --- fetch_many -------------------------------------------------------------------------------


async def test_fetch_many_keeps_order(server: str, jpeg: bytes) -> None:
    urls = [
        f"{server}/img.jpg",
        "http://10.0.0.1/x.jpg",
        f"{server}/status/404",
        "ftp://example.com/x.jpg",
        f"{server}/chain/1",
        f"{server}/html.jpg",
    ] * 3
    async with ImageFetcher(settings(allowed_hosts=("127.0.0.1",), concurrency=2)) as fetcher:
        results = await fetcher.fetch_many(urls)
    kinds = [r.media_type if isinstance(r, FetchedImage) else r.kind for r in results]
    expected = ["image/jpeg", "address_not_allowed", "not_found", "scheme_not_allowed"]
    assert kinds == [*expected, "image/jpeg", "not_image"] * 3
    assert all(r.data == jpeg for r in results if isinstance(r, FetchedImage))


# --- the resolver inside the connector (DNS names, rebinding) ------------------------------------


class FakeResolver(AbstractResolver):
    """Answers every name with fixed addresses, like a hostile DNS server would."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses
        self.calls = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.calls += 1
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.addresses
        ]

    async def close(self) -> None:
        pass


async def fetch_via_dns(
    server: str, allowed: tuple[str, ...], *addresses: str
) -> tuple[FetchedImage | ImageFetchError, int]:
    port = server.rsplit(":", 1)[1]
    inner = FakeResolver(*addresses)
    resolver = GuardedResolver(AddressPolicy.from_allowed(allowed), inner)
    connector = aiohttp.TCPConnector(resolver=resolver)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with ImageFetcher(settings(allowed_hosts=allowed), session=session) as fetcher:
            [result] = await fetcher.fetch_many([f"http://images.example.com:{port}/img.jpg"])
        assert not session.closed  # an injected session belongs to the caller
    return result, inner.calls


async def test_resolver_refuses_name_resolving_to_loopback(server: str) -> None:
    result, calls = await fetch_via_dns(server, (), "127.0.0.1")
    assert isinstance(result, ImageFetchError) and result.kind == "address_not_allowed"
    assert calls == 1


async def test_resolver_refuses_if_any_address_is_private(server: str) -> None:
    result, _ = await fetch_via_dns(server, ("127.0.0.1",), "127.0.0.1", "10.0.0.7")
    assert isinstance(result, ImageFetchError) and result.kind == "address_not_allowed"


async def test_connector_uses_the_checked_address(server: str) -> None:
    result, calls = await fetch_via_dns(server, ("127.0.0.1",), "127.0.0.1")
    assert isinstance(result, FetchedImage) and result.media_type == "image/jpeg"
    assert calls == 1


async def test_allow_listed_name_skips_address_check(server: str) -> None:
    result, _ = await fetch_via_dns(server, ("images.example.com",), "127.0.0.1")
    assert isinstance(result, FetchedImage)


async def test_unguarded_session_is_rejected() -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ValueError, match="guarded_session"):
            ImageFetcher(settings(), session=session)
    async with guarded_session(settings()) as session:
        ImageFetcher(settings(), session=session)


async def test_refusals_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="prodcat.serving"):
        await fetch_error(settings(), "http://169.254.169.254/")
    assert any(r.levelno == logging.WARNING and "169.254" in r.getMessage() for r in caplog.records)


# --- the policy, as a table -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("8.8.8.8", False),
        ("1.1.1.1", False),
        ("93.184.216.34", False),
        ("0.0.0.0", True),
        ("0.1.2.3", True),
        ("10.255.255.255", True),
        ("100.64.0.1", True),
        ("100.127.255.255", True),
        ("100.128.0.1", False),
        ("127.0.0.1", True),
        ("127.255.255.254", True),
        ("169.254.169.254", True),
        ("172.15.255.255", False),
        ("172.16.0.1", True),
        ("172.31.255.255", True),
        ("172.32.0.1", False),
        ("192.0.0.1", True),
        ("192.0.2.1", True),
        ("192.168.0.1", True),
        ("198.18.0.1", True),
        ("224.0.0.251", True),
        ("239.255.255.250", True),
        ("240.0.0.1", True),
        ("255.255.255.255", True),
        ("2606:4700:4700::1111", False),
        ("2001:4860:4860::8888", False),
        ("::", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("::ffff:10.0.0.1", True),
        ("::ffff:8.8.8.8", False),
        ("::127.0.0.1", True),
        ("::8.8.8.8", False),
        ("64:ff9b::127.0.0.1", True),
        ("64:ff9b::169.254.169.254", True),
        ("64:ff9b::8.8.8.8", False),
        ("64:ff9b:1::1", True),
        ("2002:7f00:1::1", True),
        ("2002:0808:0808::1", False),
        ("2001::1", True),
        ("2001:db8::1", True),
        ("fc00::1", True),
        ("fd12:3456::1", True),
        ("fe80::1", True),
        ("fec0::1", True),
        ("ff02::1", True),
        ("100::1", True),
        ("4000::1", True),
    ],
)
def test_blocked_reason_table(address: str, refused: bool) -> None:
    assert (blocked_reason(ipaddress.ip_address(address)) is not None) == refused


@pytest.mark.parametrize(
    ("host", "expected", "canonical"),
    [
        ("127.0.0.1", "127.0.0.1", True),
        ("2130706433", "127.0.0.1", False),
        ("0x7f.1", "127.0.0.1", False),
        ("0x7F000001", "127.0.0.1", False),
        ("017700000001", "127.0.0.1", False),
        ("0177.0.0.1", "127.0.0.1", False),
        ("127.1", "127.0.0.1", False),
        ("::ffff:7f00:1", "::ffff:7f00:1", True),
        ("fe80::1%25eth0", "fe80::1%eth0", True),
        ("example.com", None, None),
        ("deadbeef", None, None),
        ("cafe.be", None, None),
    ],
)
def test_parse_ip_host(host: str, expected: str | None, canonical: bool | None) -> None:
    parsed = parse_ip_host(host)
    if expected is None:
        assert parsed is None
    else:
        assert parsed == (ipaddress.ip_address(expected), canonical)


def test_policy_allow_list() -> None:
    policy = AddressPolicy.from_allowed(["127.0.0.1", "10.0.0.0/8", "Images.Internal.", "[::1]"])
    assert policy.address_refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert policy.address_refusal(ipaddress.ip_address("::ffff:127.0.0.1")) is None
    assert policy.address_refusal(ipaddress.ip_address("127.0.0.2")) == "loopback"
    assert policy.address_refusal(ipaddress.ip_address("10.9.8.7")) is None
    assert policy.address_refusal(ipaddress.ip_address("::1")) is None
    assert policy.address_refusal(ipaddress.ip_address("fe80::1%eth0")) == "link-local"
    assert policy.name_refusal("images.internal") is None
    assert policy.name_refusal("metadata.google.internal.") == "blocked host name"
    assert policy.name_refusal("foo.localhost") == "blocked host name"
    assert policy.name_refusal("example.com") is None


@pytest.mark.parametrize(
    ("data", "media_type"),
    [
        (b"\xff\xd8\xff\xe0\0\x10JFIF", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "image/png"),
        (b"GIF87a\x01\0", "image/gif"),
        (b"GIF89a\x01\0", "image/gif"),
        (b"RIFF\x24\0\0\0WEBPVP8 ", "image/webp"),
        (b"BM" + b"\0" * 12 + (40).to_bytes(4, "little") + b"\0" * 8, "image/bmp"),
        (b"BM is not a bitmap header at all", None),
        (b"RIFF\x24\0\0\0WAVEfmt ", None),
        (HTML, None),
        (b"", None),
    ],
)
def test_sniff_media_type(data: bytes, media_type: str | None) -> None:
    assert sniff_media_type(data) == media_type
