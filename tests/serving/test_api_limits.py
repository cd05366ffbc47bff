"""The similarity API refuses before reading: API key, rate limit, upload size, pixel bombs."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from prodcat.core.settings import ApiSettings, ImageSettings, MilvusSettings
from prodcat.serving.api import create_api
from prodcat.serving.product_vectors import ProductVectors
from prodcat.serving.request_limits import TokenBuckets
from tests.serving.test_image_header import png_bomb

GIB = 1024**3
CHUNK = 1024 * 1024
KEY = "k" * 32


class Untouchable:
    """A store and an embedder that must not be reached."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            raise AssertionError(f"{name} reached behind a refused request")

        return call


class EmptyStore:
    """A vector store holding nothing."""

    def count(self) -> int:
        return 0

    def exists(self) -> bool:
        return True

    def get_vector(self, product_id: str) -> None:
        return None


def _empty() -> ProductVectors:
    return ProductVectors(MilvusSettings(), images=EmptyStore(), texts=EmptyStore())  # type: ignore[arg-type]


class Stream:
    """A request body of ``total`` bytes made on demand; counts what the server pulled."""

    def __init__(self, total: int, head: bytes = b"") -> None:
        self.total, self.head, self.pulled = total, head, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        boundary = b"--b\r\nContent-Disposition: form-data; name=image; filename=x.png\r\n\r\n"
        yield boundary + self.head
        self.pulled = len(boundary) + len(self.head)
        while self.pulled < self.total:
            # No server may buffer this: 64 MiB pulled already proves the body is being read.
            assert self.pulled < 64 * CHUNK, f"the server read {self.pulled} bytes of the upload"
            self.pulled += CHUNK
            yield b"\0" * CHUNK


def _api(settings: ApiSettings, spy: Untouchable) -> Any:
    vectors = ProductVectors(MilvusSettings(), images=spy, texts=spy)  # type: ignore[arg-type]
    return create_api(settings, vectors=vectors, embedder=spy, registry=CollectorRegistry())  # type: ignore[arg-type]


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


FORM = {"content-type": "multipart/form-data; boundary=b"}


@pytest.fixture
def spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where multipart parsing would spool an upload to disk."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


async def test_an_anonymous_1gib_upload_is_refused_before_it_is_read(spool_dir: Path) -> None:
    spy = Untouchable()
    app = _api(ApiSettings(key=SecretStr(KEY)), spy)
    body = Stream(GIB)
    async with _client(app) as client:
        response = await client.post("/v1/similar", content=body, headers=FORM)
        assert response.status_code == 401
        assert body.pulled <= CHUNK, "not a byte beyond the first chunk may be read"
        assert not spy.calls and not list(spool_dir.iterdir())
        wrong = await client.post(
            "/v1/similar", content=Stream(GIB), headers={**FORM, "x-api-key": "wrong"}
        )
        assert wrong.status_code == 401
        assert (await client.get("/v1/similar/p1")).status_code == 401
    assert not spy.calls


async def test_with_the_key_reads_work_and_probes_need_none() -> None:
    app = create_api(
        ApiSettings(key=SecretStr(KEY)),
        vectors=_empty(),
        embedder=Untouchable(),  # type: ignore[arg-type]
        registry=CollectorRegistry(),
    )
    async with _client(app) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/v1/similar/p1", headers={"x-api-key": KEY})).status_code == 404
        bearer = {"authorization": f"Bearer {KEY}"}
        assert (await client.get("/v1/similar/p1", headers=bearer)).status_code == 404


async def test_an_oversize_upload_with_the_key_is_cut_off_at_the_limit(spool_dir: Path) -> None:
    spy = Untouchable()
    app = _api(ApiSettings(key=SecretStr(KEY), max_upload_bytes=64 * 1024), spy)
    auth = {**FORM, "authorization": f"Bearer {KEY}"}
    async with _client(app) as client:
        declared = await client.post(
            "/v1/similar", content=b"x" * 10, headers={**auth, "content-length": str(GIB)}
        )
        assert declared.status_code == 413  # by Content-Length, nothing read
        body = Stream(GIB)  # chunked: no Content-Length
        streamed = await client.post("/v1/similar", content=body, headers=auth)
        assert streamed.status_code == 413
        assert body.pulled <= 64 * 1024 + 64 * 1024 + 2 * CHUNK
    assert not spy.calls and not list(spool_dir.iterdir())


async def test_a_pixel_bomb_upload_is_a_422_and_never_embedded() -> None:
    spy = Untouchable()
    app = _api(ApiSettings(max_upload_bytes=1024 * 1024), spy)
    async with _client(app) as client:
        response = await client.post(
            "/v1/similar", files={"image": ("bomb.png", png_bomb(), "image/png")}
        )
    assert response.status_code == 422, response.text
    assert "pixels" in response.json()["detail"]
    assert not spy.calls


async def test_requests_beyond_the_rate_limit_get_429_per_client() -> None:
    app = create_api(
        ApiSettings(key=SecretStr(KEY), rate_per_s=0.01, rate_burst=3),
        vectors=_empty(),
        embedder=Untouchable(),  # type: ignore[arg-type]
        registry=CollectorRegistry(),
    )
    auth = {"x-api-key": KEY}
    async with _client(app) as client:
        statuses = [
            (await client.get("/v1/similar/p1", headers=auth)).status_code for _ in range(5)
        ]
    assert statuses == [404, 404, 404, 429, 429], statuses


def test_token_buckets_refill_and_stay_bounded() -> None:
    buckets = TokenBuckets(rate_per_s=1.0, burst=2, max_clients=100)
    assert buckets.take("a", now=0.0) == 0.0 and buckets.take("a", now=0.0) == 0.0
    assert buckets.take("a", now=0.0) == pytest.approx(1.0)
    assert buckets.take("a", now=1.5) == 0.0  # refilled
    for i in range(1000):
        buckets.take(f"client-{i}", now=2.0)
    assert len(buckets) == 100


def test_without_a_key_the_api_is_open_as_documented() -> None:
    assert ApiSettings().key is None
    assert create_api.__doc__ is not None and "ingress" in create_api.__doc__


def test_image_settings_bound_pixels() -> None:
    assert ImageSettings().max_pixels == 40_000_000
