"""Shared fixtures: a real Kafka broker per session, fresh topics and worker processes per test."""

from __future__ import annotations

import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from prodcat import localkafka
from prodcat.core.settings import (
    FeedSettings,
    KafkaSettings,
    LocalKafkaSettings,
    Settings,
    TopicNames,
    WorkerSettings,
    load_settings,
)
from prodcat.streams.topics import ensure_topics, topic_specs
from prodcat.streams.worker_process import start_worker, stop_worker, wait_worker_ready


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = load_settings().data_dir
    if not path.is_dir():
        pytest.fail(f"shared data not found at {path}; set PRODCAT_DATA_DIR")
    return path


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real single-node Apache Kafka broker on loopback, for the whole session."""
    cfg = LocalKafkaSettings(
        home=tmp_path_factory.mktemp("kafka"), port=free_port(), controller_port=free_port()
    )
    status = localkafka.start(cfg)
    try:
        yield status.bootstrap
    finally:
        localkafka.stop(cfg)


def isolated_settings(
    bootstrap: str, data_dir: Path, state_dir: Path, *, partitions: int = 4, **worker: Any
) -> Settings:
    """Settings on uuid-named topics (created) with a uuid consumer group, the worker's timeouts
    short (``worker`` overrides more of its settings), a new feed's profile after 2 s at most."""
    uid = uuid.uuid4().hex[:10]
    base = TopicNames()
    topics = TopicNames(
        **{
            field: f"t{uid}.{getattr(base, field)}"
            for field in TopicNames.model_fields
            if field != "partitions"
        },
        partitions=partitions,
    )
    settings = load_settings(
        data_dir=data_dir,
        kafka=KafkaSettings(bootstrap_servers=bootstrap),
        topics=topics,
        worker=WorkerSettings(
            app_id=f"prodcat-test-{uid}",
            metrics_port=free_port(),
            session_timeout_s=6,
            heartbeat_interval_s=1,
            commit_interval_s=0.5,
            log_level="WARNING",
            state_dir=state_dir,
            **worker,
        ),
        # a new feed's first records wait at most 2 s for its profile (10 s by default)
        feeds=FeedSettings(wait_s=2.0),
    )
    ensure_topics(settings.kafka, topic_specs(settings.topics))
    return settings


@pytest.fixture
def pipeline_settings(kafka_bootstrap: str, data_dir: Path, tmp_path: Path) -> Settings:
    """Settings with uuid-named topics (created) and a uuid consumer group for this test."""
    return isolated_settings(kafka_bootstrap, data_dir, tmp_path / "faust")


WorkerFactory = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def run_worker(tmp_path: Path) -> Iterator[WorkerFactory]:
    """Start `prodcat worker ROLES` processes; wait until ready; stop them after the test."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(
        settings: Settings, roles: list[str], stage: str = "normalize", module: str = "prodcat"
    ) -> subprocess.Popen[bytes]:
        proc = start_worker(settings, roles, tmp_path / f"worker-{len(procs)}.log", module=module)
        procs.append(proc)
        try:
            wait_worker_ready(
                proc, settings.worker.metrics_host, settings.worker.metrics_port, stage
            )
        except Exception:
            print((tmp_path / f"worker-{len(procs) - 1}.log").read_text(errors="replace")[-5000:])
            raise
        return proc

    yield start
    for proc in procs:
        stop_worker(proc)


@dataclass(frozen=True)
class TrainedClassifier:
    """A quickly trained two-headed classifier exported as version 1 under ``model_base``."""

    model_base: Path
    name: str
    model: Any
    class_ids: list[str]
    card: dict[str, Any]

    def export(self, model_base: Path, version: int | None = None) -> Path:
        from prodcat.training.export import export_model

        return export_model(
            self.model,
            base_dir=model_base,
            name=self.name,
            class_ids=self.class_ids,
            card=self.card,
            version=version,
        )


@pytest.fixture(scope="session")
def trained_classifier(
    tmp_path_factory: pytest.TempPathFactory, data_dir: Path
) -> TrainedClassifier:
    """Logistic regression with both heads, 2 epochs at level 2 over a 10,000-term vocabulary
    (~45 s on two cores; the default 60,000 terms took ~130 s for +0.5 points), exported once."""
    from prodcat.core.ids import path_id
    from prodcat.training.train_command import RunConfig, model_card, train_on_protocol

    root = tmp_path_factory.mktemp("classifier")
    config = root / "quick.yaml"
    config.write_text(
        "model: {family: logreg, multi_objective: true, max_tokens: 10000}\n"
        "training: {epochs: 2, batch_size: 256}\n"
    )
    run = RunConfig.load(config)
    result = train_on_protocol(data_dir, 2, run.model, run.training, progress=False)
    class_ids = [path_id(label.split(" > ")) for label in result.classes]
    classifier = TrainedClassifier(
        root / "models", "classifier", result.model, class_ids, model_card(result, run, data_dir)
    )
    classifier.export(classifier.model_base)
    return classifier


@pytest.fixture(scope="session")
def embedder_model_base(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """The pretrained image embedder exported as version 1 (at 96 px, to keep tests quick)."""
    from prodcat.training.embedder import export_embedder

    base = tmp_path_factory.mktemp("embedder") / "models"
    export_embedder(
        weights=data_dir / "weights" / "mobilenet_v2_0.35_224_no_top.weights.h5",
        base_dir=base,
        image_size=96,
    )
    return base
