"""Annotator accounts, signed session cookies and CSRF tokens.

* **Accounts** live in a JSON users file (``UiSettings.users_file``): per name a random salt and a
  PBKDF2-HMAC-SHA256 hash (``hashlib``), with the iteration count stored beside it so it can be
  raised later without invalidating old accounts. The file is re-read when it changes, so
  removing a user ends their sessions.
* **Sessions** are a cookie holding ``base64url(json) + "." + HMAC-SHA256`` of it under the UI
  secret: the annotator's name, a CSRF token (also the session's id) and when it was issued. A
  restart keeps everyone logged in and replicas only need the same secret. **Logout revokes** the
  session server-side: its id goes into a revocation set until the session would have expired
  anyway (bounded: ``max_revoked`` ids, the oldest forgotten first), and is published on
  ``ui.sessions.revoked``, which every UI replica follows into its view: a copied cookie is
  refused by the other replicas too, as soon as their follower has read the logout.
* **Login throttling** (:class:`LoginThrottle`): failures per client address and per name in a
  sliding minute, checked and recorded in one step, with a cap on password checks (PBKDF2 work)
  per client; the per-name limit does not apply to a client that has not been failing, so
  nobody can lock an annotator out. Memory is bounded (LRU-capped tables).
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
import logging
import os
import re
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from prodcat.serving.web.exceptions import AuthError

logger = logging.getLogger(__name__)

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

    def __init__(
        self,
        secret: bytes,
        ttl_s: float,
        *,
        max_revoked: int = 100_000,
        announce: Callable[[str, float], None] | None = None,
        revoked_elsewhere: Callable[[str], bool] | None = None,
    ) -> None:
        """``announce(session_id, expires_at)`` tells the other UI replicas of a logout;
        ``revoked_elsewhere(session_id)`` asks what they told (both: ``ui.sessions.revoked``,
        wired by :func:`prodcat.serving.web.server.session_codec`)."""
        if len(secret) < 16:
            raise AuthError("the session secret must have at least 16 bytes")
        self._key = hashlib.sha256(b"prodcat-ui-session\x00" + secret).digest()
        self.ttl_s = ttl_s
        self.max_revoked = max_revoked
        self._revoked: OrderedDict[str, float] = OrderedDict()  # session id -> its expiry
        self._revoked_lock = threading.Lock()
        self._announce = announce
        self._revoked_elsewhere = revoked_elsewhere

    def revoke(self, session: Session, now: float | None = None) -> None:
        """End ``session`` server-side (logout): its cookie is refused from now on."""
        now = time.time() if now is None else now
        with self._revoked_lock:
            self._revoked[session.csrf] = session.issued_at + self.ttl_s
            while self._revoked:  # drop the expired ones (all in order of revocation) ...
                oldest, expiry = next(iter(self._revoked.items()))
                if expiry >= now and len(self._revoked) <= self.max_revoked:
                    break
                del self._revoked[oldest]  # ... and beyond the bound, the oldest
        if self._announce is not None:
            try:
                self._announce(session.csrf, session.issued_at + self.ttl_s)
            except Exception:  # this replica refuses the cookie already; the others may not
                logger.exception("could not tell the other UI replicas of a logout")

    def revoked_count(self) -> int:
        return len(self._revoked)

    def _is_revoked(self, session_id: str) -> bool:
        with self._revoked_lock:
            if session_id in self._revoked:
                return True
        return self._revoked_elsewhere is not None and self._revoked_elsewhere(session_id)

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
        if not issued - 60 <= now <= issued + self.ttl_s or self._is_revoked(csrf):
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


@dataclass(frozen=True)
class LoginAttempt:
    """A password check :meth:`LoginThrottle.begin` granted; hand it back to ``end``."""

    client: str
    name: str
    at: float


class _Windows:
    """Timestamps per key in a sliding window, for at most ``max_keys`` keys (least recently
    touched forgotten first) and ``max_len`` stamps per key."""

    def __init__(self, window_s: float, max_len: int, max_keys: int) -> None:
        self.window_s, self.max_len, self.max_keys = window_s, max_len, max_keys
        self._stamps: OrderedDict[str, deque[float]] = OrderedDict()

    def recent(self, key: str, now: float) -> int:
        stamps = self._stamps.get(key)
        if stamps is None:
            return 0
        self._stamps.move_to_end(key)
        while stamps and stamps[0] <= now - self.window_s:
            stamps.popleft()
        if not stamps:
            del self._stamps[key]
            return 0
        return len(stamps)

    def add(self, key: str, now: float) -> None:
        stamps = self._stamps.pop(key, None) or deque(maxlen=self.max_len)
        stamps.append(now)
        self._stamps[key] = stamps
        while len(self._stamps) > self.max_keys:
            self._stamps.popitem(last=False)

    def remove(self, key: str, stamp: float) -> None:
        stamps = self._stamps.get(key)
        if stamps is not None and stamp in stamps:
            stamps.remove(stamp)

    def __len__(self) -> int:
        return len(self._stamps)


class LoginThrottle:
    """Login attempts, checked and recorded atomically (:meth:`begin`, then :meth:`end`).

    * per client address: at most ``per_minute`` failures in any 60 s, whatever the names;
    * per name: at most ``per_minute`` failures in any 60 s from clients that have been failing;
      a client without recent failures still gets its attempt, so a guesser elsewhere cannot
      lock the annotator out (each of a guesser's addresses gets one try per locked name, then
      its own failure throttles it);
    * password checks (PBKDF2 work) per client: at most ``max_in_flight`` at once and
      ``checks_per_minute`` in any 60 s, failures or not.

    An attempt counts as a failure from :meth:`begin` until :meth:`end` says it succeeded, so
    concurrent guesses cannot all pass the check before the first failure is recorded. Each table
    holds at most ``max_keys`` keys (the least recently seen forgotten first).
    """

    def __init__(
        self,
        per_minute: int,
        *,
        max_in_flight: int = 2,
        checks_per_minute: int | None = None,
        max_keys: int = 10_000,
    ) -> None:
        self.per_minute = per_minute
        self.max_in_flight = max_in_flight
        self.checks_per_minute = checks_per_minute or max(3 * per_minute, 10)
        self._clients = _Windows(60.0, per_minute, max_keys)
        self._names = _Windows(60.0, per_minute, max_keys)
        self._checks = _Windows(60.0, self.checks_per_minute, max_keys)
        self._in_flight: OrderedDict[str, int] = OrderedDict()
        self._max_keys = max_keys
        self._lock = threading.Lock()

    def begin(self, client: str, name: str, now: float | None = None) -> LoginAttempt | None:
        """A granted password check (recorded as a failure until :meth:`end`), or None."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._in_flight.get(client, 0) >= self.max_in_flight:
                return None
            client_failures = self._clients.recent(client, now)
            if client_failures >= self.per_minute:
                return None
            if client_failures and self._names.recent(name, now) >= self.per_minute:
                return None
            if self._checks.recent(client, now) >= self.checks_per_minute:
                return None
            self._clients.add(client, now)
            self._names.add(name, now)
            self._checks.add(client, now)
            self._in_flight[client] = self._in_flight.get(client, 0) + 1
            while len(self._in_flight) > self._max_keys:
                self._in_flight.popitem(last=False)
            return LoginAttempt(client, name, now)

    def end(self, attempt: LoginAttempt, *, ok: bool) -> None:
        """The check is over; a success is no failure (of the client, nor of the name)."""
        with self._lock:
            left = self._in_flight.get(attempt.client, 0) - 1
            if left > 0:
                self._in_flight[attempt.client] = left
            else:
                self._in_flight.pop(attempt.client, None)
            if ok:
                self._clients.remove(attempt.client, attempt.at)
                self._names.remove(attempt.name, attempt.at)

    def size(self) -> int:
        """Keys held over every table (bounded by ``3 * max_keys`` plus those in flight)."""
        return len(self._clients) + len(self._names) + len(self._checks)
