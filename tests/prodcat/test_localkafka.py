"""The local Kafka lifecycle: idempotent start/stop/status and clear errors."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prodcat import localkafka
from prodcat.core.settings import LocalKafkaSettings
from prodcat.localkafka import LocalKafkaError, process_running
from tests.conftest import free_port


@pytest.mark.integration
@pytest.mark.slow
def test_start_is_idempotent_and_stop_stops(tmp_path: Path) -> None:
    cfg = LocalKafkaSettings(home=tmp_path / "k", port=free_port(), controller_port=free_port())
    assert not localkafka.status(cfg).running
    first = localkafka.start(cfg)
    try:
        assert first.running and first.pid
        again = localkafka.start(cfg)
        assert again.pid == first.pid
        assert (tmp_path / "k" / "data" / "meta.properties").exists()
        assert (tmp_path / "k" / "logs" / "server.log").stat().st_size > 0
    finally:
        assert localkafka.stop(cfg) is True
    assert not localkafka.status(cfg).running
    assert localkafka.stop(cfg) is False
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", cfg.port), timeout=1):
        pass


def test_missing_java_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # neither java nor mvn on PATH
    cfg = LocalKafkaSettings(
        home=tmp_path / "k",
        jar_cache=tmp_path / "jars",
        port=free_port(),
        controller_port=free_port(),
    )
    with pytest.raises(LocalKafkaError, match="`java` is not on PATH"):
        localkafka.start(cfg)
    with pytest.raises(LocalKafkaError, match="`mvn` is not on PATH"):
        localkafka.ensure_jars(cfg)


def test_a_taken_port_is_reported(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        cfg = LocalKafkaSettings(
            home=tmp_path / "k", port=busy.getsockname()[1], controller_port=free_port()
        )
        with pytest.raises(LocalKafkaError, match="is taken"):
            localkafka.start(cfg)


def test_cluster_ids_never_look_like_options() -> None:
    ids = [localkafka.new_cluster_id() for _ in range(5000)]
    assert not any(cid.startswith("-") for cid in ids)
    assert all(len(cid) == 22 for cid in ids) and len(set(ids)) == len(ids)


def test_a_process_whose_main_thread_ended_runs_until_its_last_thread_ends() -> None:
    """A JVM stopping shows its main thread as a zombie while the rest of it shuts down: stopping
    a node must wait for the whole process, or its restart finds its ports taken."""
    code = (
        "import threading, time, ctypes\n"
        "t = threading.Thread(target=time.sleep, args=(2,))\n"
        "t.start()\n"
        "ctypes.CDLL(None).pthread_exit(None)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        time.sleep(0.8)
        leader = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        assert leader == "Z" and process_running(proc.pid)
        assert proc.wait(timeout=10) == 0
        assert not process_running(proc.pid)
    finally:
        proc.kill()
        proc.wait()
