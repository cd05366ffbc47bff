"""Accounts (salted PBKDF2), signed sessions, CSRF tokens, cross-site detection, login throttle."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from prodcat.serving.web.auth import (
    LoginThrottle,
    SessionCodec,
    Users,
    cross_site,
    csrf_ok,
    hash_password,
    load_or_create_secret,
    verify_password,
)
from prodcat.serving.web.exceptions import AuthError


def test_passwords_are_salted_and_verified() -> None:
    one, two = (
        hash_password("s3cret-pass", iterations=1000),
        hash_password("s3cret-pass", iterations=1000),
    )
    assert one["salt"] != two["salt"] and one["hash"] != two["hash"]
    assert verify_password("s3cret-pass", one) and verify_password("s3cret-pass", two)
    assert not verify_password("s3cret-pasS", one)
    assert not verify_password("s3cret-pass", {**one, "algorithm": "md5"})
    assert not verify_password("s3cret-pass", {"salt": "zz"})


def test_users_file_is_private_and_reread(tmp_path: Path) -> None:
    users = Users(tmp_path / "ui" / "users.json")
    assert users.add("alice", "correct horse", iterations=1000) is True
    assert users.add("alice", "battery staple", iterations=1000) is False  # reset
    mode = stat.S_IMODE((tmp_path / "ui" / "users.json").stat().st_mode)
    assert mode == 0o600
    assert users.authenticate("alice", "battery staple")
    assert not users.authenticate("alice", "correct horse")
    assert not users.authenticate("mallory", "battery staple")
    assert "battery" not in (tmp_path / "ui" / "users.json").read_text()
    # another process (the CLI) adds a user: the running app sees it
    Users(tmp_path / "ui" / "users.json").add("bob", "longer password", iterations=1000)
    assert users.names() == ["alice", "bob"]


@pytest.mark.parametrize(
    ("name", "password"),
    [("", "long enough"), ("a b", "long enough"), ("alice", "short"), ("x" * 65, "long enough")],
)
def test_bad_accounts_are_refused(tmp_path: Path, name: str, password: str) -> None:
    with pytest.raises(AuthError):
        Users(tmp_path / "users.json").add(name, password, iterations=1000)


def test_a_corrupt_users_file_is_an_error_not_an_open_door(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    path.write_text(json.dumps({"users": ["alice"]}))
    with pytest.raises(AuthError, match="users file"):
        Users(path).authenticate("alice", "whatever1")


def test_secret_is_generated_once_and_private(tmp_path: Path) -> None:
    first = load_or_create_secret(tmp_path / "secret")
    assert len(first) >= 32 and load_or_create_secret(tmp_path / "secret") == first
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600


def test_sessions_are_signed_and_expire() -> None:
    codec = SessionCodec(b"k" * 32, ttl_s=3600)
    session = codec.new("alice", now=1000.0)
    cookie = codec.dumps(session)
    assert codec.loads(cookie, now=1100.0) == session
    assert codec.loads(cookie, now=1000.0 + 3601) is None  # expired
    payload, _, signature = cookie.partition(".")
    forged = payload.replace(payload[5], "A" if payload[5] != "A" else "B") + "." + signature
    assert codec.loads(forged, now=1100.0) is None
    assert SessionCodec(b"other" * 8, 3600).loads(cookie, now=1100.0) is None  # another secret
    for junk in (None, "", "abc", "a.b", "." * 5000):
        assert codec.loads(junk, now=1100.0) is None


def test_csrf_token_is_bound_to_the_session() -> None:
    codec = SessionCodec(b"k" * 32, ttl_s=3600)
    mine, theirs = codec.new("alice"), codec.new("alice")
    assert csrf_ok(mine, mine.csrf)
    assert not csrf_ok(mine, theirs.csrf)
    assert not csrf_ok(mine, None) and not csrf_ok(None, mine.csrf)


@pytest.mark.parametrize(
    ("headers", "cross"),
    [
        ({"sec-fetch-site": "same-origin"}, False),
        ({"sec-fetch-site": "cross-site", "origin": "http://ui:8080"}, True),
        ({"sec-fetch-site": "same-site"}, True),
        ({"origin": "http://ui:8080"}, False),
        ({"origin": "https://evil.example"}, True),
        ({"origin": "null"}, True),
        ({"referer": "http://ui:8080/annotate"}, False),
        ({"referer": "http://ui:8080.evil.example/x"}, True),
        ({}, False),
    ],
)
def test_cross_site_detection(headers: dict[str, str], cross: bool) -> None:
    assert cross_site(headers, "http://ui:8080") is cross


def test_login_throttle_counts_failures_per_name_per_minute() -> None:
    # The per-name lock holds for clients that have been failing (a fresh client is let through:
    # tests/serving/web/test_limits.py); the per-name limit itself is unchanged.
    throttle = LoginThrottle(per_minute=3)
    for t, client in ((0.0, "10.0.0.1"), (1.0, "10.0.0.2"), (2.0, "10.0.0.3")):
        attempt = throttle.begin(client, "alice", now=t)
        assert attempt is not None
        throttle.end(attempt, ok=False)
    assert throttle.begin("10.0.0.1", "alice", now=3.0) is None
    assert throttle.begin("10.0.0.4", "bob", now=3.0) is not None
    assert throttle.begin("10.0.0.2", "alice", now=61.0) is not None
