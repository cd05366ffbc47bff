"""Annotator accounts, signed session cookies and CSRF tokens.

* **Accounts** live in a JSON users file (``UiSettings.users_file``): per name a random salt and a
  PBKDF2-HMAC-SHA256 hash (``hashlib``), with the iteration count stored beside it so it can be
  raised later without invalidating old accounts. The file is re-read when it changes, so
  removing a user ends their sessions.
* **Sessions** are a cookie holding ``base64url(json) + "." + HMAC-SHA256`` of it under the UI
  secret: the annotator's name, a CSRF token and when it was issued. Nothing is stored server
  side, so a restart keeps everyone logged in and replicas only need the same secret.
* **CSRF**: every form carries the session's token (``csrf_token``) and every ``fetch`` write
  sends it as ``X-CSRF-Token``; writes from another site are refused before the token is even
  looked at (``Sec-Fetch-Site`` / ``Origin``; see :func:`cross_site`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from prodcat.serving.web.exceptions import AuthError

PBKDF2_ITERATIONS: Final = 600_000  # OWASP's 2023 figure for PBKDF2-HMAC-SHA256
NAME_PATTERN: Final = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD: Final = 8
MAX_PASSWORD: Final = 1024


def hash_password(password: str, *, iterations: int = PBKDF2_ITERATIONS) -> dict[str, Any]:
    """A users-file entry for ``password``: fresh 16-byte salt, PBKDF2-HMAC-SHA256."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return {"algorithm": "pbkdf2_sha256", "iterations": iterations, "salt": salt.hex(),
            "hash": digest.hex()}  # fmt: skip


def verify_password(password: str, entry: dict[str, Any]) -> bool:
    """Whether ``password`` matches a users-file entry (constant-time comparison)."""
    try:
        salt = bytes.fromhex(entry["salt"])
        expected = bytes.fromhex(entry["hash"])
        iterations = int(entry["iterations"])
    except (KeyError, ValueError, TypeError):
        return False
    if entry.get("algorithm") != "pbkdf2_sha256" or len(password) > MAX_PASSWORD:
        return False
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return hmac.compare_digest(digest, expected)


def check_new_account(name: str, password: str) -> None:
    if not NAME_PATTERN.match(name):
        raise AuthError(f"user name {name!r}: use 1-64 letters, digits or _ . @ -")
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AuthError(f"the password must have {MIN_PASSWORD} to {MAX_PASSWORD} characters")


class Users:
    """The users file: read on demand (re-read when its mtime changes), written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, dict[str, Any]] = {}

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._users = None, {}
            return self._users
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            try:
                raw = json.loads(self.path.read_text(encoding="utf-8"))
                users = raw["users"]
                if not isinstance(users, dict):
                    raise TypeError("users is not an object")
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise AuthError(f"cannot read the users file {self.path}: {exc}") from exc
            self._stamp, self._users = stamp, users
        return self._users

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._load())

    def exists(self, name: str) -> bool:
        with self._lock:
            return name in self._load()

    def authenticate(self, name: str, password: str) -> bool:
        with self._lock:
            entry = self._load().get(name)
        if entry is None:
            # Spend the same time as a real check, so names cannot be probed by timing.
            verify_password(password, _DUMMY_ENTRY)
            return False
        return verify_password(password, entry)

    def add(self, name: str, password: str, *, iterations: int = PBKDF2_ITERATIONS) -> bool:
        """Create or replace an account; True when it is new. The file is written 0600."""
        check_new_account(name, password)
        entry = {**hash_password(password, iterations=iterations), "created_at": int(time.time())}
        with self._lock:
            users = dict(self._load())
            created = name not in users
            users[name] = entry
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"users": users}, handle, indent=1, sort_keys=True)
            tmp.replace(self.path)
            self._stamp = None
        return created


_DUMMY_ENTRY: Final = {
    "algorithm": "pbkdf2_sha256",
    "iterations": PBKDF2_ITERATIONS,
    "salt": "00" * 16,
    "hash": "00" * 32,
}


def load_or_create_secret(path: Path) -> bytes:
    """The signing secret stored at ``path``, created (0600, 32 random bytes) the first time."""
    try:
        text = path.read_text(encoding="ascii").strip()
        if len(text) >= 32:
            return text.encode()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(secret + "\n")
    return secret.encode()


@dataclass(frozen=True)
class Session:
    """What the session cookie says: the annotator (None before login) and the CSRF token."""

    user: str | None
    csrf: str
    issued_at: float


class SessionCodec:
    """Signs and verifies session cookies (HMAC-SHA256 under the UI secret)."""

    def __init__(self, secret: bytes, ttl_s: float) -> None:
        if len(secret) < 16:
            raise AuthError("the session secret must have at least 16 bytes")
        self._key = hashlib.sha256(b"prodcat-ui-session\x00" + secret).digest()
        self.ttl_s = ttl_s

    def new(self, user: str | None, now: float | None = None) -> Session:
        return Session(user, secrets.token_urlsafe(24), time.time() if now is None else now)

    def dumps(self, session: Session) -> str:
        body = json.dumps(
            {"u": session.user, "c": session.csrf, "t": int(session.issued_at)},
            separators=(",", ":"),
        ).encode()
        payload = base64.urlsafe_b64encode(body).rstrip(b"=")
        signature = hmac.new(self._key, payload, hashlib.sha256).digest()
        return (payload + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()

    def loads(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session of a cookie, or None when it is missing, forged, malformed or expired."""
        if not cookie or len(cookie) > 4096 or "." not in cookie:
            return None
        payload, _, signature = cookie.encode().partition(b".")
        expected = hmac.new(self._key, payload, hashlib.sha256).digest()
        try:
            given = base64.urlsafe_b64decode(signature + b"=" * (-len(signature) % 4))
            if not hmac.compare_digest(given, expected):
                return None
            body = json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
            user, csrf, issued = body["u"], body["c"], float(body["t"])
        except (binascii.Error, ValueError, KeyError, TypeError):
            return None
        if (user is not None and not isinstance(user, str)) or not isinstance(csrf, str):
            return None
        now = time.time() if now is None else now
        if not issued - 60 <= now <= issued + self.ttl_s:
            return None
        return Session(user, csrf, issued)


def csrf_ok(session: Session | None, token: str | None) -> bool:
    """Whether ``token`` is this session's CSRF token."""
    if session is None or not token:
        return False
    return hmac.compare_digest(session.csrf.encode(), token.encode())


def cross_site(headers: Any, own_origin: str) -> bool:
    """Whether a request comes from another site: ``Sec-Fetch-Site`` when the browser sends it,
    else ``Origin``, else ``Referer``; a request with none of them (curl) is not cross-site, and
    still needs its CSRF token."""
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none")
    origin = headers.get("origin")
    if origin is not None:
        return bool(origin != own_origin)
    referer = headers.get("referer")
    if referer is not None:
        return not (referer == own_origin or referer.startswith(own_origin + "/"))
    return False


class LoginThrottle:
    """At most ``per_minute`` failed logins per user name in any 60 s (password guessing)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, name: str, now: float) -> deque[float]:
        failures = self._failures.setdefault(name, deque())
        while failures and failures[0] <= now - 60:
            failures.popleft()
        return failures

    def allowed(self, name: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            return len(self._recent(name, now)) < self.per_minute

    def failed(self, name: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if len(self._failures) > 10_000:  # bounded: forget the quiet names
                self._failures = {k: v for k, v in self._failures.items() if v}
            self._recent(name, now).append(now)
