"""Entry point of a worker process: metrics and probe endpoint, Faust app, agents for the roles."""

from __future__ import annotations

import gc
import logging
from collections.abc import Sequence

import faust
from prometheus_client import CollectorRegistry, ProcessCollector

from prodcat.core.metrics import MemoryCollector
from prodcat.core.settings import Settings
from prodcat.streams.app import create_app
from prodcat.streams.health import Heartbeat, serve

logger = logging.getLogger(__name__)


def run_worker(settings: Settings, roles: Sequence[str]) -> None:
    """Run a Faust worker for ``roles`` until it is stopped (SIGTERM/SIGINT). Does not return."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    MemoryCollector(registry)
    worker_settings = settings.worker
    heartbeat = Heartbeat()
    if worker_settings.metrics_port:
        serve(worker_settings.metrics_host, worker_settings.metrics_port, registry, heartbeat)
        logger.info(
            "metrics on http://%s:%d/metrics (probes /healthz, /readyz)",
            worker_settings.metrics_host,
            worker_settings.metrics_port,
        )
    app = create_app(settings, roles, registry)

    async def beat() -> None:
        heartbeat.beat()

    app.timer(interval=1.0)(beat)

    worker = faust.Worker(app, loglevel=worker_settings.log_level, quiet=True)
    # Everything imported and built so far lives as long as the process: keep it out of the
    # cyclic collector's generations, so collections walk only what the stages allocate.
    gc.collect()
    gc.freeze()
    worker.execute_from_commandline()
