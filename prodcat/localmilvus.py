"""A local Milvus standalone server on loopback, for the vector store's server path (tests,
benchmarks, a developer's machine): the PyPI package ``milvus`` (2.3.x, installed with the dev
tools) ships the standalone binary with embedded etcd and local storage; it starts in ~10 s.

Every port it opens that can be chosen is a free one picked at start, its data lives under
``base_dir`` (a restart on the same directory keeps the collections), and ``PRODCAT_MILVUS__URI``
takes the ``uri`` it reports. Its embedded etcd always listens on peer port 2380, so one such
server runs on a machine at a time: :func:`start` waits (``wait_s``) for a machine-wide lock that
the running one holds until :meth:`LocalMilvus.stop`.
"""

from __future__ import annotations

import fcntl
import logging
import signal
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from prodcat.core.errors import ProdcatError

__all__ = ["LocalMilvus", "start"]

#: The server's internal ports (etcd and each coordinator and node), all moved to free ones.
_PORTS = (
    "etcd_port",
    "proxy_internal_port",
    "root_coord_port",
    "query_coord_port",
    "query_node_port",
    "index_coord_port",
    "index_node_port",
    "data_coord_port",
    "data_node_port",
)


class LocalMilvusError(ProdcatError):
    """The local Milvus server is missing or did not start."""


logger = logging.getLogger(__name__)

#: Held by the machine's running local server (its embedded etcd's fixed peer port 2380).
LOCK_PATH = Path(tempfile.gettempdir()) / "prodcat-localmilvus.lock"


def _lock(wait_s: float) -> IO[str]:
    handle = LOCK_PATH.open("a+")
    deadline = time.monotonic() + wait_s
    told = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() > deadline:
                handle.close()
                raise LocalMilvusError(
                    f"another local Milvus server runs on this machine (its embedded etcd holds "
                    f"port 2380; lock {LOCK_PATH}): stop it, or wait longer"
                ) from None
            if not told:
                logger.info("waiting for the local Milvus server that runs to stop (%s)", LOCK_PATH)
                told = True
            time.sleep(0.5)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalMilvus:
    """A running server: its ``uri`` (``http://127.0.0.1:<port>``); :meth:`stop` ends it."""

    port: int
    base_dir: Path
    server: Any
    seconds_to_start: float
    lock: IO[str] | None = None
    wait_s: float = 600.0

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, *, keep_lock: bool = False) -> None:
        """Stop the server; ``keep_lock`` when it will :meth:`restart` (no other may start)."""
        self.server.stop()
        if self.lock is not None and not keep_lock:
            self.lock.close()  # releases the machine-wide lock
            self.lock = None

    def pause(self) -> None:
        """An outage without losing the address: the server process stops (SIGSTOP); requests
        hang until their deadlines. :meth:`resume` continues it."""
        self.server.server_proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.server.server_proc.send_signal(signal.SIGCONT)

    def restart(self, timeout_s: float = 90.0) -> None:
        """Start the same server again on the same port, with the same data, after :meth:`stop`
        (clients reconnect to the address they know, as after a real outage). The package binds
        its ports without ``SO_REUSEADDR``: after a stop the port waits out the kernel's
        TIME_WAIT (up to a minute)."""
        if self.lock is None:
            self.lock = _lock(self.wait_s)
        deadline = time.monotonic() + timeout_s
        while not _bindable(self.port):  # the old process's socket is still closing
            if time.monotonic() > deadline:
                raise LocalMilvusError(f"port {self.port} did not come free")
            time.sleep(0.2)
        self.server.listen_port = self.port
        self.server.start()
        if int(self.server.listen_port) != self.port:
            self.server.stop()
            raise LocalMilvusError(f"the server restarted on another port than {self.port}")


def start(base_dir: Path, port: int | None = None, *, wait_s: float = 600.0) -> LocalMilvus:
    """Start a Milvus standalone server with its data under ``base_dir``, once no other local
    one runs on this machine (waiting up to ``wait_s``)."""
    try:
        import milvus
    except ImportError as exc:
        raise LocalMilvusError(
            "the Milvus standalone server is not installed: `make install` (or "
            "`pip install milvus==2.3.5`)"
        ) from exc
    base_dir.mkdir(parents=True, exist_ok=True)
    lock = _lock(wait_s)
    server = milvus.MilvusServer()
    server.set_base_dir(str(base_dir))
    server.listen_port = port or _free_port()
    for key in _PORTS:
        server.config.set(key, _free_port())
    # Its health and metrics port: the package starts looking at 9091 and takes the first it can
    # bind, then lets go of it until the binary binds it, so two servers starting at once took
    # the same one (one never became healthy). A free one of its own instead.
    server.webservice_port = _free_port()
    started = time.monotonic()
    try:
        server.start()
    except Exception as exc:  # the package raises plain exceptions (timeouts, exits)
        server.stop()
        lock.close()
        raise LocalMilvusError(f"the Milvus server under {base_dir} did not start: {exc}") from exc
    seconds = time.monotonic() - started
    return LocalMilvus(int(server.listen_port), base_dir, server, seconds, lock, wait_s)
