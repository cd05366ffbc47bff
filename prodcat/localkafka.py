"""A real Apache Kafka broker (KRaft) for development, tests and the demo: one node, or a cluster.

The broker jars come from Maven Central through ``prodcat/kafka/pom.xml`` (shipped in the
package) into a local cache; each node runs as a detached JVM with its data, logs and pid file
under ``LocalKafkaSettings.home`` (``home/node-<i>`` when ``brokers`` > 1). A cluster of N nodes
(``prodcat dev kafka start --brokers 3``) has every node as broker and controller, a static
controller quorum, and internal topics replicated min(3, N) times. Every operation is idempotent:
``start`` on a running broker only waits for it, ``stop`` on a stopped one does nothing.
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


def nodes(settings: LocalKafkaSettings) -> list[LocalKafkaSettings]:
    """The settings of each node: ``settings`` itself for one broker, else one copy per node with
    its own home and ports (``port + 2i``, ``controller_port + 2i``). A home that holds a cluster
    (its ``cluster.brokers``) is that cluster whatever ``brokers`` says, so ``status`` and
    ``stop`` find every node."""
    size = settings.home / "cluster.brokers"
    if settings.brokers == 1 and size.is_file():
        settings = settings.model_copy(update={"brokers": int(size.read_text(encoding="utf-8"))})
    if settings.brokers == 1:
        return [settings]
    return [
        settings.model_copy(
            update={
                "home": settings.home / f"node-{i}",
                "port": settings.port + 2 * i,
                "controller_port": settings.controller_port + 2 * i,
            }
        )
        for i in range(settings.brokers)
    ]


def _server_properties(settings: LocalKafkaSettings, node: int = 0, brokers: int = 1) -> str:
    """One node's configuration (``settings``: that node's, from :func:`nodes`)."""
    data = settings.home / "data"
    replicas, isr = min(3, brokers), min(2, brokers)
    if brokers == 1:
        quorum = f"controller.quorum.bootstrap.servers={settings.host}:{settings.controller_port}"
    else:
        first = settings.controller_port - 2 * node
        voters = ",".join(f"{i + 1}@{settings.host}:{first + 2 * i}" for i in range(brokers))
        quorum = f"controller.quorum.voters={voters}"
    return "\n".join(
        [
            "process.roles=broker,controller",
            f"node.id={node + 1}",
            quorum,
            f"listeners=PLAINTEXT://{settings.host}:{settings.port},"
            f"CONTROLLER://{settings.host}:{settings.controller_port}",
            f"advertised.listeners=PLAINTEXT://{settings.host}:{settings.port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={data}",
            "num.partitions=1",
            "auto.create.topics.enable=false",
            f"offsets.topic.replication.factor={replicas}",
            "offsets.topic.num.partitions=4",
            f"transaction.state.log.replication.factor={replicas}",
            f"transaction.state.log.min.isr={isr}",
            "transaction.state.log.num.partitions=4",
            f"share.coordinator.state.topic.replication.factor={replicas}",
            f"share.coordinator.state.topic.min.isr={isr}",
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
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:  # our own child, exited (e.g. killed)
        del _CHILDREN[pid]
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def _bootstrap(settings: LocalKafkaSettings) -> str:
    return ",".join(f"{node.host}:{node.port}" for node in nodes(settings))


def status(settings: LocalKafkaSettings) -> BrokerStatus:
    """Running when every node runs; ``pid``: the first node's."""
    pids = [_read_pid(node) for node in nodes(settings)]
    running = all(pid is not None for pid in pids)
    return BrokerStatus(running, pids[0], _bootstrap(settings), settings.home)


def node_pid(settings: LocalKafkaSettings, node: int) -> int | None:
    """The pid of node ``node`` (0-based) when it runs (fault tests kill it)."""
    return _read_pid(nodes(settings)[node])


def _cluster_id(settings: LocalKafkaSettings) -> str:
    """One id for every node of a cluster, kept under its home."""
    path = settings.home / "cluster.id"
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()
    settings.home.mkdir(parents=True, exist_ok=True)
    cid = new_cluster_id()
    path.write_text(cid, encoding="utf-8")
    (settings.home / "cluster.brokers").write_text(str(settings.brokers), encoding="utf-8")
    return cid


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


def _format_storage(
    settings: LocalKafkaSettings, classpath: str, properties: Path, cluster_id: str | None = None
) -> None:
    """Format a node's storage once (``cluster_id``: a cluster's, else a new single node)."""
    if (settings.home / "data" / "meta.properties").exists():
        return
    cid = cluster_id or new_cluster_id()
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
        *([] if cluster_id else ["--standalone"]),  # a cluster's quorum is the static voters
        "--ignore-formatted",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise LocalKafkaError(f"formatting KRaft storage failed:\n{proc.stdout}{proc.stderr}")


def wait_ready(bootstrap: str, timeout_s: float, pid: int | None = None, brokers: int = 1) -> None:
    """Block until the cluster answers a metadata request naming ``brokers`` brokers (or fail
    with the reason)."""
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
            if len(meta.brokers) >= brokers:
                return
        except Exception as exc:  # confluent_kafka raises KafkaException for an unready broker
            last_error = str(exc)
        time.sleep(0.3)
    raise LocalKafkaError(f"broker at {bootstrap} not ready after {timeout_s:.0f}s: {last_error}")


def start(settings: LocalKafkaSettings) -> BrokerStatus:
    """Start the broker, or every node of a cluster that is not running (resolving jars and
    formatting storage first), and wait until all of them serve."""
    current = status(settings)
    if current.running:
        wait_ready(current.bootstrap, settings.start_timeout_s, current.pid, settings.brokers)
        return current
    _require(
        "java", "Install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)."
    )
    libs = ensure_jars(settings)
    classpath = f"{libs}/*"
    cluster_id = _cluster_id(settings) if settings.brokers > 1 else None
    started: list[tuple[LocalKafkaSettings, int]] = []
    for index, node in enumerate(nodes(settings)):
        if _read_pid(node) is not None:
            continue  # a cluster with a node down: only that node starts
        for port in (node.port, node.controller_port):
            if _port_open(node.host, port):
                raise LocalKafkaError(
                    f"port {node.host}:{port} is taken by another process; set "
                    "PRODCAT_LOCAL_KAFKA__PORT / PRODCAT_LOCAL_KAFKA__CONTROLLER_PORT"
                )
        started.append((node, _spawn(node, classpath, index, settings.brokers, cluster_id)))
    try:
        first = started[0][1] if started else None
        wait_ready(_bootstrap(settings), settings.start_timeout_s, first, settings.brokers)
    except LocalKafkaError as exc:
        tails = "\n".join(
            (node.home / "logs" / "stdout.log").read_text(errors="replace")[-3000:]
            for node, _ in started
        )
        stop(settings)
        raise LocalKafkaError(f"{exc}\nbroker output:\n{tails}") from exc
    return status(settings)


def _spawn(
    node: LocalKafkaSettings, classpath: str, index: int, brokers: int, cluster_id: str | None
) -> int:
    """Write a node's configuration, format its storage and start its JVM; its pid."""
    (node.home / "logs").mkdir(parents=True, exist_ok=True)
    properties = node.home / "server.properties"
    properties.write_text(_server_properties(node, index, brokers), encoding="utf-8")
    _format_storage(node, classpath, properties, cluster_id)
    cmd = [
        "java",
        "-Xms256m",
        f"-Xmx{node.heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        f"-Dkafka.logs.dir={node.home / 'logs'}",
        "-cp",
        classpath,
        "kafka.Kafka",
        str(properties),
    ]
    out = (node.home / "logs" / "stdout.log").open("ab")
    proc = subprocess.Popen(  # the broker outlives this process by design
        cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
    )
    out.close()
    _CHILDREN[proc.pid] = proc
    _pid_file(node).write_text(str(proc.pid), encoding="utf-8")
    logger.info(
        "started Kafka node %d (pid %d) on %s:%d", index + 1, proc.pid, node.host, node.port
    )
    return proc.pid


def stop(settings: LocalKafkaSettings, timeout_s: float = 30.0) -> bool:
    """Stop the broker or every node (SIGTERM to all at once, so that no node waits for a quorum
    that is already leaving; SIGKILL after ``timeout_s``); True if any was running."""
    return _stop_nodes(nodes(settings), timeout_s)


def stop_node(settings: LocalKafkaSettings, node: int, timeout_s: float = 30.0) -> bool:
    """Stop node ``node`` (0-based) of a cluster as :func:`stop` stops all, and wait until its
    process has exited (a JVM's main thread can end before the rest of it); :func:`start` starts
    it again. True if it was running."""
    return _stop_nodes([nodes(settings)[node]], timeout_s)


def _stop_nodes(chosen: list[LocalKafkaSettings], timeout_s: float) -> bool:
    running = [(node, _read_pid(node)) for node in chosen]
    pids = [pid for _, pid in running if pid is not None]
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _alive(pid)]
        if alive:
            time.sleep(0.2)
    for pid in alive:
        logger.warning("Kafka pid %d ignored SIGTERM for %.0fs; killing it", pid, timeout_s)
        os.kill(pid, signal.SIGKILL)
        _reap(pid)
    for node, _ in running:
        _pid_file(node).unlink(missing_ok=True)
    return bool(pids)


def _alive(pid: int) -> bool:
    _reap(pid)  # our own child, if it exited, is collected (and forgotten) here
    return pid in _CHILDREN or process_running(pid)


def process_running(pid: int) -> bool:
    """False for a process that is gone or a zombie (exited, not yet collected by its parent).
    A JVM's main thread can end (and show as a zombie) while its other threads still shut down:
    the process runs while any of its threads does."""
    try:
        if _state(Path(f"/proc/{pid}/stat")) != "Z":
            return True
        threads = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return False
    for thread in threads:
        try:
            if _state(thread / "stat") != "Z":
                return True
        except OSError:
            continue
    return False


def _state(stat: Path) -> str:
    return stat.read_text().rsplit(")", 1)[1].split()[0]


def _reap(pid: int) -> None:
    """Collect the exit status when the broker is our own child (tests start it in-process)."""
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]
