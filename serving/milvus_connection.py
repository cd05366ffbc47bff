"""Opening a Milvus client for a URI, releasing milvus-lite directories, and translating errors.

A local ``*.db`` URI makes pymilvus start milvus-lite inside this process (a gRPC server thread
holding the directory's LOCK until process exit); :func:`release` stops it once the last user in
this process is done, so another process may open the directory. Errors become
:class:`~prodcat.serving.exceptions.VectorStoreUnavailableError` when retrying may help (server down,
deadline passed) and :class:`~prodcat.serving.exceptions.VectorStoreError` otherwise.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import grpc
from pymilvus import MilvusClient, MilvusException

from prodcat.serving.exceptions import VectorStoreError, VectorStoreUnavailableError

__all__ = ["NOT_LOADED", "connect", "is_local", "release", "translate_errors"]

NOT_LOADED: Final = 101  # Milvus ErrCollectionNotLoaded
_CONNECT_FAILED: Final = 2  # pymilvus Status.CONNECT_FAILED
_UNAVAILABLE_WORDS: Final = ("unavailable", "deadline", "timed out", "timeout", "connect")
#: gRPC statuses of a server that is down, stalled or overloaded (transient).
_UNAVAILABLE_CODES: Final = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }
)
_lock = threading.Lock()
_users: Counter[str] = Counter()


def is_local(uri: str) -> bool:
    """Whether ``uri`` names a milvus-lite directory rather than a server."""
    return not uri.lower().startswith(("http://", "https://", "tcp://", "unix:"))


@contextmanager
def translate_errors(action: str, where: str) -> Iterator[None]:
    """Re-raise pymilvus errors as vector store errors naming ``action`` and ``where``."""
    try:
        yield
    except MilvusException as exc:
        text = str(exc.message)
        message = f"milvus {action} ({where}): {text}"
        lowered = text.casefold()
        if "open local milvus failed" in lowered:
            message += "; another process may hold its LOCK (share it via `milvus-lite server`)"
            raise VectorStoreError(message) from exc
        if exc.code == _CONNECT_FAILED or any(word in lowered for word in _UNAVAILABLE_WORDS):
            raise VectorStoreUnavailableError(message) from exc
        raise VectorStoreError(message) from exc
    except grpc.RpcError as exc:  # some pymilvus calls let gRPC's own errors through
        code = exc.code() if callable(getattr(exc, "code", None)) else None
        message = f"milvus {action} ({where}): gRPC {code}: {exc}"
        if code in _UNAVAILABLE_CODES:
            raise VectorStoreUnavailableError(message) from exc
        raise VectorStoreError(message) from exc
    except OSError as exc:
        raise VectorStoreUnavailableError(f"milvus {action} ({where}): {exc}") from exc


def connect(uri: str, token: str, timeout_s: float) -> MilvusClient:
    """A client for ``uri``; a local path must end in ``.db`` (its parent is created)."""
    local = is_local(uri)
    if local:
        if not uri.endswith(".db"):
            raise VectorStoreError(f"milvus uri {uri!r}: a local path must end in .db")
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
    with translate_errors("connect", uri):
        client = MilvusClient(uri=uri, token=token, timeout=timeout_s)
    if local:
        with _lock:
            _users[str(Path(uri).resolve())] += 1
    return client


def release(client: MilvusClient, uri: str) -> None:
    """Close a client from :func:`connect`; the last one for a local directory stops milvus-lite."""
    client.close()
    if not is_local(uri):
        return
    key = str(Path(uri).resolve())
    with _lock:
        _users[key] -= 1
        last = _users[key] <= 0
        if last:
            del _users[key]
    if last:
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(uri)
