"""The worker's probe endpoint: liveness from the event loop's heartbeat, readiness from the stages."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Gauge

from prodcat.streams import health
from prodcat.streams.health import Heartbeat, readiness, serve
from tests.conftest import free_port


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_readiness_waits_for_every_stage() -> None:
    registry = CollectorRegistry()
    assert readiness(registry) == (False, "no stage has started")
    ready = Gauge("prodcat_worker_ready", "ready", ["stage"], registry=registry)
    ready.labels("normalize").set(1)
    ready.labels("classify").set(0)
    assert readiness(registry) == (False, "waiting for classify")
    ready.labels("classify").set(1)
    assert readiness(registry) == (True, "ready: classify, normalize")


def test_a_silent_event_loop_fails_liveness(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(health.time, "monotonic", lambda: now[0])
    beat = Heartbeat(stall_s=30)
    assert beat.alive() == (True, "starting")
    beat.beat()
    now[0] += 29
    assert beat.alive()[0]
    now[0] += 2
    assert beat.alive() == (False, "event loop silent for 31s")
    beat.beat()
    assert beat.alive()[0]


def test_the_endpoint_serves_metrics_and_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = CollectorRegistry()
    ready = Gauge("prodcat_worker_ready", "ready", ["stage"], registry=registry)
    ready.labels("normalize").set(0)
    now = [0.0]
    monkeypatch.setattr(health.time, "monotonic", lambda: now[0])
    beat = Heartbeat(stall_s=30)
    port = free_port()
    server = serve("127.0.0.1", port, registry, beat)
    try:
        assert _get(port, "/readyz") == (503, "waiting for normalize\n")
        ready.labels("normalize").set(1)
        assert _get(port, "/readyz") == (200, "ready: normalize\n")
        assert _get(port, "/healthz")[0] == 200
        beat.beat()
        now[0] += 60
        assert _get(port, "/healthz") == (503, "event loop silent for 60s\n")
        status, body = _get(port, "/metrics")
        assert status == 200 and 'prodcat_worker_ready{stage="normalize"} 1.0' in body
        assert _get(port, "/nope")[0] == 404
    finally:
        server.shutdown()
        server.server_close()
