"""A real single-node Apache Kafka broker (KRaft) for development, tests and the demo.

The broker jars come from Maven Central through ``prodcat/kafka/pom.xml`` (shipped in the
package) into a local cache; the broker runs as a detached JVM with its data, logs and pid file
under ``LocalKafkaSettings.home``. Every
operation is idempotent: ``start`` on a running broker only waits for it, ``stop`` on a stopped one does
nothing.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from prodcat.core.errors import ProdcatError
from prodcat.core.settings import LocalKafkaSettings


class LocalKafkaError(ProdcatError):
    """The local Kafka broker could not be installed, started or stopped."""


logger = logging.getLogger(__name__)

POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"
LOG4J_CONFIG = POM.parent / "log4j2.properties"
_COMPLETE_MARKER = ".complete"
#: Brokers started by this process, kept so they are reaped on stop (and not reported as leaked).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str
    home: Path


def _require(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise LocalKafkaError(f"`{tool}` is not on PATH; the local Kafka broker needs it. {hint}")
    return path


def _kafka_version() -> str:
    text = POM.read_text(encoding="utf-8")
    start = text.index("<kafka.version>") + len("<kafka.version>")
    return text[start : text.index("</kafka.version>", start)]


def ensure_jars(settings: LocalKafkaSettings) -> Path:
    """Resolve the broker and its runtime dependencies into the jar cache (once per version)."""
    libs = settings.jar_cache / _kafka_version() / "libs"
    if (libs / _COMPLETE_MARKER).exists():
        return libs
    mvn = _require("mvn", "Install Maven 3.8+ (Debian: apt-get install maven).")
    _require(
        "java", "Install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)."
    )
    if libs.exists():
        shutil.rmtree(libs)
    libs.mkdir(parents=True)
    logger.info("resolving Apache Kafka %s from Maven Central into %s", _kafka_version(), libs)
    cmd = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={libs}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise LocalKafkaError(
            f"Maven could not resolve the Kafka broker (exit {proc.returncode}):\n"
            f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    (libs / _COMPLETE_MARKER).write_text(_kafka_version(), encoding="utf-8")
    return libs


def _server_properties(settings: LocalKafkaSettings) -> str:
    data = settings.home / "data"
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers={settings.host}:{settings.controller_port}",
            f"listeners=PLAINTEXT://{settings.host}:{settings.port},"
            f"CONTROLLER://{settings.host}:{settings.controller_port}",
            f"advertised.listeners=PLAINTEXT://{settings.host}:{settings.port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={data}",
            "num.partitions=1",
            "auto.create.topics.enable=false",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=4",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "group.min.session.timeout.ms=2000",
            "log.retention.hours=168",
            "log.cleaner.backoff.ms=5000",
            "",
        ]
    )


def _pid_file(settings: LocalKafkaSettings) -> Path:
    return settings.home / "kafka.pid"


def _read_pid(settings: LocalKafkaSettings) -> int | None:
    try:
        pid = int(_pid_file(settings).read_text(encoding="utf-8").strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def _bootstrap(settings: LocalKafkaSettings) -> str:
    return f"{settings.host}:{settings.port}"


def status(settings: LocalKafkaSettings) -> BrokerStatus:
    pid = _read_pid(settings)
    return BrokerStatus(pid is not None, pid, _bootstrap(settings), settings.home)


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def new_cluster_id() -> str:
    """A random KRaft cluster id as Kafka's ``Uuid.randomUuid()`` makes them: URL-safe base64 of
    16 random bytes, never starting with ``-`` (a command line would read it as an option)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not cid.startswith("-"):
            return cid


def _format_storage(settings: LocalKafkaSettings, classpath: str, properties: Path) -> None:
    if (settings.home / "data" / "meta.properties").exists():
        return
    cid = new_cluster_id()
    cmd = [
        "java",
        "-cp",
        classpath,
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        f"-Dkafka.logs.dir={settings.home / 'logs'}",
        "kafka.tools.StorageTool",
        "format",
        f"--cluster-id={cid}",
        "-c",
        str(properties),
        "--standalone",
        "--ignore-formatted",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise LocalKafkaError(f"formatting KRaft storage failed:\n{proc.stdout}{proc.stderr}")


def wait_ready(bootstrap: str, timeout_s: float, pid: int | None = None) -> None:
    """Block until the broker answers a metadata request (or fail with the reason)."""
    from confluent_kafka.admin import AdminClient  # local: heavy import, only for dev tooling

    deadline = time.monotonic() + timeout_s
    last_error = "no answer"
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000, "log_level": 0})
    while time.monotonic() < deadline:
        if pid is not None:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                raise LocalKafkaError(f"the broker process {pid} exited during start-up") from None
        if not _port_open(host, int(port)):
            time.sleep(0.2)
            continue
        try:
            meta = admin.list_topics(timeout=2)
            if meta.brokers:
                return
        except Exception as exc:  # confluent_kafka raises KafkaException for an unready broker
            last_error = str(exc)
        time.sleep(0.3)
    raise LocalKafkaError(f"broker at {bootstrap} not ready after {timeout_s:.0f}s: {last_error}")


def start(settings: LocalKafkaSettings) -> BrokerStatus:
    """Start the broker (resolving jars and formatting storage first) and wait until it serves."""
    current = status(settings)
    if current.running:
        wait_ready(current.bootstrap, settings.start_timeout_s, current.pid)
        return current
    _require(
        "java", "Install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)."
    )
    for port in (settings.port, settings.controller_port):
        if _port_open(settings.host, port):
            raise LocalKafkaError(
                f"port {settings.host}:{port} is taken by another process; set "
                "PRODCAT_LOCAL_KAFKA__PORT / PRODCAT_LOCAL_KAFKA__CONTROLLER_PORT"
            )
    libs = ensure_jars(settings)
    classpath = f"{libs}/*"
    (settings.home / "logs").mkdir(parents=True, exist_ok=True)
    properties = settings.home / "server.properties"
    properties.write_text(_server_properties(settings), encoding="utf-8")
    _format_storage(settings, classpath, properties)
    cmd = [
        "java",
        "-Xms256m",
        f"-Xmx{settings.heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        f"-Dkafka.logs.dir={settings.home / 'logs'}",
        "-cp",
        classpath,
        "kafka.Kafka",
        str(properties),
    ]
    out = (settings.home / "logs" / "stdout.log").open("ab")
    proc = subprocess.Popen(  # the broker outlives this process by design
        cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
    )
    out.close()
    _CHILDREN[proc.pid] = proc
    _pid_file(settings).write_text(str(proc.pid), encoding="utf-8")
    logger.info("started Kafka pid %d on %s", proc.pid, _bootstrap(settings))
    try:
        wait_ready(_bootstrap(settings), settings.start_timeout_s, proc.pid)
    except LocalKafkaError as exc:
        tail = (settings.home / "logs" / "stdout.log").read_text(errors="replace")[-3000:]
        stop(settings)
        raise LocalKafkaError(f"{exc}\nbroker output:\n{tail}") from exc
    return status(settings)


def stop(settings: LocalKafkaSettings, timeout_s: float = 30.0) -> bool:
    """Stop the broker (SIGTERM, then SIGKILL after ``timeout_s``); True if one was running."""
    pid = _read_pid(settings)
    if pid is None:
        _pid_file(settings).unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        _reap(pid)
        time.sleep(0.2)
    else:
        logger.warning("Kafka pid %d ignored SIGTERM for %.0fs; killing it", pid, timeout_s)
        os.kill(pid, signal.SIGKILL)
        _reap(pid)
    _pid_file(settings).unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    """Collect the exit status when the broker is our own child (tests start it in-process)."""
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]
