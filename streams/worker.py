"""Entry point of a worker process: metrics endpoint, Faust app, agents for the given roles."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import faust
from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server

from prodcat.settings import Settings
from streams.app import create_app

logger = logging.getLogger(__name__)


def run_worker(settings: Settings, roles: Sequence[str]) -> None:
    """Run a Faust worker for ``roles`` until it is stopped (SIGTERM/SIGINT). Does not return."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    worker_settings = settings.worker
    if worker_settings.metrics_port:
        start_http_server(worker_settings.metrics_port, worker_settings.metrics_host, registry)
        logger.info(
            "metrics on http://%s:%d/metrics",
            worker_settings.metrics_host,
            worker_settings.metrics_port,
        )
    app = create_app(settings, roles, registry)
    worker = faust.Worker(app, loglevel=worker_settings.log_level, quiet=True)
    worker.execute_from_commandline()
