"""The web UI refuses before reading (uploads), throttles logins atomically per client and per
name with bounded memory, refuses pixel bombs, and revokes a session at logout."""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from prodcat.core.settings import ImageSettings, ServingSettings, Settings, UiSettings
from prodcat.serving.web.app import WebParts, create_web_app
from prodcat.serving.web.auth import LoginThrottle, SessionCodec, Users
from prodcat.serving.web.metrics import WebMetrics
from prodcat.serving.web.view import TopicView
from tests.serving.test_api_limits import CHUNK, GIB, Stream
from tests.serving.test_image_header import png_bomb

PASSWORD = "correct horse"
ORIGIN = "http://127.0.0.1"


class Similarity:
    """The similarity service: records what reaches it."""

    mode = "hybrid"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def by_image(self, data: bytes, k: int, category: str | None) -> dict[str, Any]:
        self.calls.append("by_image")
        return {"hits": []}


class CountingUsers(Users):
    """Users whose password checks (the PBKDF2 work) are counted and take a while."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.checks = 0
        self._count_lock = threading.Lock()

    def authenticate(self, name: str, password: str) -> bool:
        with self._count_lock:
            self.checks += 1
        time.sleep(0.05)  # a real check takes ~0.3 s at 600k iterations
        return super().authenticate(name, password)


@pytest.fixture
def parts(tmp_path: Path) -> WebParts:
    settings = Settings(
        ui=UiSettings(max_upload_bytes=1024 * 1024, login_attempts_per_minute=5),
        serving=ServingSettings(),
        images=ImageSettings(),
    )
    users = CountingUsers(tmp_path / "users.json")
    users.add("alice", PASSWORD, iterations=1000)
    metrics = WebMetrics(CollectorRegistry())
    return WebParts(
        settings=settings.ui,
        images=settings.images,
        users=users,
        codec=SessionCodec(b"k" * 32, 3600),
        view=TopicView(),
        annotation=None,  # type: ignore[arg-type]
        similarity=Similarity(),  # type: ignore[arg-type]
        mappings=None,  # type: ignore[arg-type]
        taxonomy=None,  # type: ignore[arg-type]
        review=None,  # type: ignore[arg-type]
        metrics=metrics,
    )


@pytest.fixture
def spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    yield spool


@pytest.fixture
async def client(parts: WebParts) -> AsyncIterator[httpx.AsyncClient]:
    app = create_web_app(parts)
    transport = httpx.ASGITransport(app=app, client=("10.0.0.1", 1234))
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
        yield client


async def _login_form(client: httpx.AsyncClient) -> str:
    page = (await client.get("/login")).text
    return page.split('name="csrf_token" value="')[1].split('"')[0]


async def _login(client: httpx.AsyncClient, name: str, password: str) -> httpx.Response:
    token = await _login_form(client)
    form = {"name": name, "password": password, "csrf_token": token}
    return await client.post("/login", data=form, follow_redirects=False)


async def _csrf(client: httpx.AsyncClient) -> str:
    page = (await client.get("/similar")).text
    return page.split('name="csrf-token" content="')[1].split('"')[0]


FORM = {"content-type": "multipart/form-data; boundary=b"}


# 7. Uploads reach disk before auth and size checks


async def test_an_anonymous_1gib_upload_is_refused_before_it_reaches_disk(
    client: httpx.AsyncClient, parts: WebParts, spool_dir: Path
) -> None:
    body = Stream(GIB)
    response = await client.post("/ui/api/similar", content=body, headers=FORM)
    assert response.status_code == 401
    assert body.pulled <= CHUNK, f"{body.pulled} bytes of an anonymous upload were read"
    assert not list(spool_dir.iterdir()) and not parts.similarity.calls  # type: ignore[attr-defined]


async def test_a_logged_in_oversize_upload_is_cut_off_at_the_limit(
    client: httpx.AsyncClient, parts: WebParts, spool_dir: Path
) -> None:
    assert (await _login(client, "alice", PASSWORD)).status_code == 303
    headers = {**FORM, "x-csrf-token": await _csrf(client)}
    declared = await client.post(
        "/ui/api/similar", content=b"x", headers={**headers, "content-length": str(GIB)}
    )
    assert declared.status_code == 413
    body = Stream(GIB)
    streamed = await client.post("/ui/api/similar", content=body, headers=headers)
    assert streamed.status_code == 413
    assert body.pulled <= 1024 * 1024 + 64 * 1024 + 2 * CHUNK
    no_csrf = await client.post("/ui/api/similar", content=Stream(GIB), headers=FORM)
    assert no_csrf.status_code == 403
    assert not list(spool_dir.iterdir()) and not parts.similarity.calls  # type: ignore[attr-defined]


# 6. Image decompression bombs (the UI's similarity upload)


async def test_a_pixel_bomb_upload_is_a_422(client: httpx.AsyncClient, parts: WebParts) -> None:
    assert (await _login(client, "alice", PASSWORD)).status_code == 303
    response = await client.post(
        "/ui/api/similar",
        files={"image": ("bomb.png", png_bomb(), "image/png")},
        headers={"x-csrf-token": await _csrf(client)},
    )
    assert response.status_code == 422, response.text
    assert "pixels" in response.json()["detail"]
    assert not parts.similarity.calls  # type: ignore[attr-defined]


# 8. Login throttling


async def test_40_concurrent_wrong_guesses_are_not_all_evaluated(
    client: httpx.AsyncClient, parts: WebParts
) -> None:
    token = await _login_form(client)
    form = {"name": "alice", "password": "wrong guess", "csrf_token": token}
    responses = await asyncio.gather(*(client.post("/login", data=form) for _ in range(40)))
    statuses = sorted(r.status_code for r in responses)
    checks = parts.users.checks  # type: ignore[attr-defined]
    assert checks <= 5, f"{checks} of 40 concurrent guesses were evaluated ({statuses})"
    assert statuses.count(429) >= 35


async def test_a_failing_client_cannot_lock_out_the_annotator(parts: WebParts) -> None:
    app = create_web_app(parts)

    def at(ip: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(ip, 1234))
        return httpx.AsyncClient(transport=transport, base_url=ORIGIN)

    async with at("10.6.6.6") as attacker, at("10.1.1.1") as alice:
        for _ in range(10):
            await _login(attacker, "alice", "wrong guess")
        assert (await _login(attacker, "alice", "wrong guess")).status_code == 429
        assert (await _login(attacker, "alice", PASSWORD)).status_code == 429  # still throttled
        assert (await _login(alice, "alice", PASSWORD)).status_code == 303  # the real annotator


def test_throttle_per_client_and_per_name_with_bounded_memory() -> None:
    throttle = LoginThrottle(per_minute=3, max_keys=100)
    for t in (0.0, 1.0, 2.0):
        attempt = throttle.begin("10.6.6.6", "alice", now=t)
        assert attempt is not None
        throttle.end(attempt, ok=False)
    assert throttle.begin("10.6.6.6", "alice", now=3.0) is None  # this client, this name
    assert throttle.begin("10.6.6.6", "bob", now=3.0) is None  # this client, any name
    fresh = throttle.begin("10.1.1.1", "alice", now=3.0)  # a client that has not been failing
    assert fresh is not None
    throttle.end(fresh, ok=True)
    other = throttle.begin("10.2.2.2", "alice", now=4.0)
    assert other is not None
    throttle.end(other, ok=False)  # a second client fails once on the locked name...
    assert throttle.begin("10.2.2.2", "alice", now=5.0) is None  # ...and is throttled on it
    assert throttle.begin("10.6.6.6", "alice", now=61.0) is not None  # the window passed
    for i in range(1000):
        attempt = throttle.begin(f"10.9.{i // 256}.{i % 256}", f"user{i}", now=70.0)
        assert attempt is not None
        throttle.end(attempt, ok=False)
    assert throttle.size() <= 3 * 100


def test_throttle_caps_concurrent_and_total_password_checks_per_client() -> None:
    throttle = LoginThrottle(per_minute=3, max_in_flight=1)
    first = throttle.begin("10.1.1.1", "alice", now=0.0)
    assert first is not None
    assert throttle.begin("10.1.1.1", "alice", now=0.0) is None  # one PBKDF2 at a time
    throttle.end(first, ok=True)
    granted = 0
    for i in range(100):  # even correct passwords: PBKDF2 work per client per minute is capped
        attempt = throttle.begin("10.1.1.1", "alice", now=1.0 + i / 100)
        if attempt is not None:
            granted += 1
            throttle.end(attempt, ok=True)
    assert granted < 100 and granted <= throttle.checks_per_minute


# 8. Logout revokes the session server-side


async def test_logout_revokes_a_copied_cookie(client: httpx.AsyncClient) -> None:
    assert (await _login(client, "alice", PASSWORD)).status_code == 303
    copied = client.cookies.get("prodcat_session")
    assert copied is not None
    token = await _csrf(client)
    logout = await client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert logout.status_code == 303
    client.cookies.clear()
    client.cookies.set("prodcat_session", copied)
    response = await client.get("/ui/api/categories")
    assert response.status_code == 401


def test_revoked_sessions_expire_from_memory() -> None:
    codec = SessionCodec(b"k" * 32, ttl_s=100, max_revoked=50)
    for i in range(200):
        session = codec.new("alice", now=float(i))
        codec.revoke(session, now=float(i))
        assert codec.loads(codec.dumps(session), now=float(i)) is None
    assert codec.revoked_count() <= 50
