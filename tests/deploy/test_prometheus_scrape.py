"""Debian's Prometheus scrapes a real worker during a replay: the counters arrive, the alert rules
load and evaluate, and every dashboard query is valid PromQL on that server."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from prodcat.core.settings import Settings
from prodcat.streams.replay import dataset_events, replay
from tests.conftest import free_port
from tests.deploy.test_metric_names import DASHBOARDS, dashboard_exprs
from tests.deploy.test_prometheus_rules import ALERTS, _alerts

pytestmark = [pytest.mark.integration]

INSTALL_HINT = (
    "prometheus not found: install Debian's prometheus package "
    "(`make install` runs deploy/install-system-deps.sh, or `sudo apt-get install prometheus`)"
)
JOB = "prodcat-normalize"


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as resp:
            body = json.loads(resp.read().decode())
        assert body["status"] == "success", body
        return body["data"]

    def value(self, query: str) -> float | None:
        """The single value of an instant query, or None when it returns no series."""
        result = self.get("/api/v1/query", query=query)["result"]
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, query: str, expected: float, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        value = None
        while time.monotonic() < deadline:
            value = self.value(query)
            if value == expected:
                return
            time.sleep(0.5)
        raise AssertionError(f"{query} = {value} after {timeout_s:.0f}s, expected {expected}")


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Any]:
    """Start Debian's Prometheus (1 s scrapes and rule evaluations, the alert rules loaded)
    scraping the given ``host:port`` targets; stopped after the test."""
    binary = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").is_file() else None
    )
    if binary is None:
        pytest.fail(INSTALL_HINT)
    procs: list[subprocess.Popen[bytes]] = []
    log_path = tmp_path / "prometheus.log"

    def start(targets: list[str]) -> Prometheus:
        config = tmp_path / "prometheus.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(ALERTS)],
                    "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": targets}]}],
                }
            )
        )
        port = free_port()
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"prometheus exited: {log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return Prometheus(url)
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"prometheus not ready: {log_path.read_text()[-3000:]}")
            time.sleep(0.2)

    try:
        yield start
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_prometheus_scrapes_a_worker_during_a_replay(
    pipeline_settings: Settings, run_worker, prometheus_for, data_dir: Path
) -> None:
    settings = pipeline_settings
    run_worker(settings, ["normalize"])
    prometheus = prometheus_for([f"127.0.0.1:{settings.worker.metrics_port}"])
    prometheus.wait_for(f'up{{job="{JOB}"}}', 1.0, timeout_s=30)

    sent = replay(
        settings.kafka, settings.topics.raw, dataset_events(data_dir, ["myntra"]), progress=False
    )
    assert sent.sent == 100
    prometheus.wait_for('sum(prodcat_events_in_total{stage="normalize"})', sent.sent)
    out = prometheus.value('sum(prodcat_events_out_total{stage="normalize"})') or 0.0
    dead = prometheus.value('sum(prodcat_dead_letters_total{stage="normalize"})') or 0.0
    assert out + dead == sent.sent and out >= 95
    assert prometheus.value('sum(prodcat_events_in_total{stage="normalize", feed="myntra"})') == 100
    assert prometheus.value(f'up{{job="{JOB}"}}') == 1.0

    # The alert rules are loaded, and every rule has been evaluated without an error.
    deadline = time.monotonic() + 30
    while True:
        groups = prometheus.get("/api/v1/rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        evaluated = all(r["lastEvaluation"] > "0001-01-01T00:00:00Z" for r in rules) and rules
        if evaluated or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert sorted(r["name"] for r in rules if r["type"] == "alerting") == sorted(_alerts())
    assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []
    assert all(r["state"] == "inactive" for r in rules), [
        r["name"] for r in rules if r["state"] != "inactive"
    ]

    # Every dashboard query (Grafana's variables filled in) is valid PromQL for this server.
    for path in DASHBOARDS:
        for expr in dashboard_exprs(path):
            query = (
                expr.replace("$__rate_interval", "1m")
                .replace("$__range", "5m")
                .replace("$stage", ".*")
                .replace("$model", ".*")
            )
            prometheus.get("/api/v1/query", query=query)  # raises on a 400 (bad_data)
