"""Start, watch and stop worker processes (the demo, integration tests and benchmarks use them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from pydantic import SecretStr

from prodcat.core.settings import Settings
from prodcat.streams.exceptions import WorkerProcessError


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for a worker subprocess that sees the same settings as this process."""
    env = dict(os.environ)
    env["PRODCAT_DATA_DIR"] = str(settings.data_dir)
    sections = ("kafka", "serde", "topics", "worker", "serving", "images", "milvus", "api")
    for section in (*sections, "retrain", "backfill", "sampler", "drift", "feeds"):
        for field, value in getattr(settings, section):
            name = f"PRODCAT_{section.upper()}__{field.upper()}"
            if value is None:
                env.pop(name, None)
            elif isinstance(value, SecretStr):
                env[name] = value.get_secret_value()
            elif isinstance(value, tuple | list):
                env[name] = json.dumps([str(v) for v in value])
            else:
                env[name] = str(value)
    env.update(extra)
    return env


def start_worker(
    settings: Settings, roles: list[str], log_path: Path, *, module: str = "prodcat"
) -> subprocess.Popen[bytes]:
    """``python -m MODULE worker ROLES`` (``module``: the ``prodcat`` command, or one that wraps
    it) with ``settings`` in its environment, its output appended to ``log_path``."""
    log = log_path.open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "worker", *roles],
        env=worker_env(settings),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    return proc


def wait_worker_ready(
    proc: subprocess.Popen[bytes], host: str, port: int, stage: str, timeout_s: float = 90
) -> None:
    """Wait until the worker's metrics say it has partitions assigned for ``stage``."""
    deadline = time.monotonic() + timeout_s
    needle = f'prodcat_worker_ready{{stage="{stage}"}} 1.0'
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise WorkerProcessError(f"worker exited with {proc.returncode} during start-up")
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=2) as resp:
                if needle in resp.read().decode():
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise WorkerProcessError(f"worker not ready after {timeout_s:.0f}s")


def stop_worker(proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def scrape_metric(host: str, port: int, name: str, **labels: str) -> float:
    """The sum of a worker's ``name`` series whose labels include ``labels`` (0 when absent)."""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(w in line for w in wanted):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_metric(
    proc: subprocess.Popen[bytes],
    host: str,
    port: int,
    name: str,
    at_least: float,
    *,
    timeout_s: float = 300,
    **labels: str,
) -> float:
    """Wait until a worker's metric reaches ``at_least``; returns its value."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise WorkerProcessError(f"worker exited with {proc.returncode}")
        value = scrape_metric(host, port, name, **labels)
        if value >= at_least:
            return value
        if time.monotonic() > deadline:
            raise WorkerProcessError(f"{name}{labels} at {value}, expected {at_least}")
        time.sleep(0.5)
