"""A worker's HTTP endpoint: Prometheus metrics plus the probes an orchestrator needs.

    GET /metrics   Prometheus exposition of the worker's registry
    GET /healthz   liveness: 200 unless the event loop has stopped beating (a stuck worker)
    GET /readyz    readiness: 200 once every stage of the worker reports ready

Liveness is a heartbeat the Faust app's own event loop writes every second; a loop blocked by a
runaway call stops beating and, after ``stall_s``, the probe fails so Kubernetes restarts the pod.
Before the first beat (start-up, ~10 s) the worker counts as alive: start-up is readiness's business.
Readiness reads the ``prodcat_worker_ready`` gauge the stages set, so it means the same thing as the
metric dashboards show.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

READY_METRIC = "prodcat_worker_ready"


class Heartbeat:
    """The time of the event loop's last beat (monotonic); thread-safe enough for one float."""

    def __init__(self, stall_s: float = 30.0) -> None:
        self.stall_s = stall_s
        self._last: float | None = None

    def beat(self) -> None:
        self._last = time.monotonic()

    def alive(self) -> tuple[bool, str]:
        if self._last is None:
            return True, "starting"
        age = time.monotonic() - self._last
        if age > self.stall_s:
            return False, f"event loop silent for {age:.0f}s"
        return True, f"last beat {age:.1f}s ago"


def readiness(registry: CollectorRegistry) -> tuple[bool, str]:
    """Ready when the worker has stages and every one reports ready."""
    stages: dict[str, float] = {}
    for family in registry.collect():
        if family.name == READY_METRIC:
            for sample in family.samples:
                stages[sample.labels.get("stage", "?")] = sample.value
    if not stages:
        return False, "no stage has started"
    waiting = sorted(stage for stage, value in stages.items() if value < 1)
    if waiting:
        return False, "waiting for " + ", ".join(waiting)
    return True, "ready: " + ", ".join(sorted(stages))


class _Handler(BaseHTTPRequestHandler):
    registry: ClassVar[CollectorRegistry]
    heartbeat: ClassVar[Heartbeat]

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._send(200, encoder(self.registry), content_type)
        elif path == "/healthz":
            ok, why = self.heartbeat.alive()
            self._send(200 if ok else 503, why.encode() + b"\n", "text/plain; charset=utf-8")
        elif path == "/readyz":
            ok, why = readiness(self.registry)
            self._send(200 if ok else 503, why.encode() + b"\n", "text/plain; charset=utf-8")
        else:
            self._send(404, b"not found\n", "text/plain; charset=utf-8")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Probes arrive every few seconds; they are not worth a log line."""


def serve(
    host: str, port: int, registry: CollectorRegistry, heartbeat: Heartbeat
) -> ThreadingHTTPServer:
    """Serve metrics and probes on ``host:port`` from a daemon thread; returns the server."""
    handler = type("WorkerHandler", (_Handler,), {"registry": registry, "heartbeat": heartbeat})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
