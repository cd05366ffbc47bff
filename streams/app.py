"""The one Faust app of a prodcat worker, and the explicit list of agents it can run."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import faust
from prometheus_client import CollectorRegistry

from prodcat.core.kafka_config import ssl_context, uses_tls
from prodcat.core.metrics import StageMetrics, WorkerMetrics
from prodcat.core.settings import Settings
from prodcat.streams.drift_agent import register_drift
from prodcat.streams.exceptions import UnknownAgentError
from prodcat.streams.normalize_agent import register_normalize
from prodcat.streams.topics import DEADLETTER_MAX_MESSAGE_BYTES

AgentFactory = Callable[[faust.App, Settings, StageMetrics], Any]


def _classify(app: faust.App, settings: Settings, metrics: StageMetrics) -> Any:
    from prodcat.streams.classify_agent import register_classify  # TensorFlow only for this role

    return register_classify(app, settings, metrics)


def _embed(app: faust.App, settings: Settings, metrics: StageMetrics) -> Any:
    from prodcat.streams.embed_agent import (
        register_embed,  # TensorFlow and Milvus only for this role
    )

    return register_embed(app, settings, metrics)


def _sample(app: faust.App, settings: Settings, metrics: StageMetrics) -> Any:
    from prodcat.streams.sampler_agent import register_sampler  # Milvus only for this role

    return register_sampler(app, settings, metrics)


def _retrain(app: faust.App, settings: Settings, metrics: StageMetrics) -> Any:
    from prodcat.streams.retrain_agent import register_retrain  # launches training jobs

    return register_retrain(app, settings, metrics)


def _mappings(app: faust.App, settings: Settings, metrics: StageMetrics) -> Any:
    from prodcat.streams.mappings import register_mappings

    return register_mappings(app, settings, metrics)


#: Agents a worker can run, by role name. A worker runs the roles it is started with.
AGENTS: dict[str, tuple[str, AgentFactory]] = {
    "normalize": ("normalize", register_normalize),
    "classify": ("classify", _classify),
    "embed": ("embed", _embed),
    "sample": ("sample", _sample),
    "retrain": ("retrain", _retrain),
    "drift": ("drift", register_drift),
    "mappings": ("mappings", _mappings),
}


def create_app(settings: Settings, roles: Sequence[str], registry: CollectorRegistry) -> faust.App:
    """Build the Faust app for ``roles`` (keys of AGENTS), with metrics declared on ``registry``."""
    unknown = [role for role in roles if role not in AGENTS]
    if unknown:
        raise UnknownAgentError(f"unknown agent role(s) {unknown}; known: {sorted(AGENTS)}")
    worker = settings.worker
    worker.state_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        worker.app_id,
        broker=settings.kafka.faust_broker,
        broker_credentials=_credentials(settings),
        store="memory://",
        datadir=str(worker.state_dir / worker.app_id),
        autodiscover=False,
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        topic_disable_leader=True,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=worker.session_timeout_s,
        broker_heartbeat_interval=worker.heartbeat_interval_s,
        broker_commit_interval=worker.commit_interval_s,
        broker_commit_every=max(10_000, worker.batch_size * 4),
        stream_buffer_maxsize=max(8192, worker.batch_size * 4),
        stream_recovery_delay=0.0,
        consumer_max_fetch_size=4 * 1024 * 1024,
        producer_max_batch_size=512 * 1024,
        producer_max_request_size=DEADLETTER_MAX_MESSAGE_BYTES,
        producer_linger=0.005,
        producer_acks=-1,
    )
    # Stages consume with their own aiokafka clients (prodcat.streams.runtime); Faust's consumer
    # and producer would join an empty subscription, so the app only hosts their tasks.
    app.boot_strategy = faust.app.base.BootStrategy(
        app, enable_kafka_consumer=False, enable_kafka_producer=False
    )
    metrics = WorkerMetrics(registry)
    for role in roles:
        stage, factory = AGENTS[role]
        factory(app, settings, metrics.stage(stage))
    return app


def _credentials(settings: Settings) -> Any:
    """Faust's credentials object: SASL (with TLS for SASL_SSL), TLS alone, or none."""
    kafka = settings.kafka
    context = ssl_context(kafka) if uses_tls(kafka) else None
    if kafka.sasl_mechanism is None or kafka.sasl_username is None:
        return faust.SSLCredentials(context) if context is not None else None
    password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
    return faust.SASLCredentials(
        username=kafka.sasl_username,
        password=password,
        mechanism=kafka.sasl_mechanism,
        ssl_context=context,
    )
