"""The topics prodcat owns, with explicit partitions and configs, and their idempotent creation."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource  # where confluent-kafka defines it
from confluent_kafka.cimpl import NewTopic

from prodcat.core.kafka_config import librdkafka_config
from prodcat.core.settings import KafkaSettings, TopicNames
from prodcat.streams.exceptions import TopicError

logger = logging.getLogger(__name__)

_WEEK_MS = str(7 * 24 * 3600 * 1000)
_MONTH_MS = str(30 * 24 * 3600 * 1000)
#: Raw events may be large (feeds send whole HTML pages); the normaliser rejects oversize content,
#: and its dead letter carries the original bytes, so the dead-letter topic allows a little more.
RAW_MAX_MESSAGE_BYTES = 10 * 1024 * 1024
DEADLETTER_MAX_MESSAGE_BYTES = 12 * 1024 * 1024
#: One record is a whole category tree (the Google taxonomy's 5,600 nodes are ~0.6 MB of Avro).
TAXONOMY_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
#: Replicas of a new topic where the cluster has that many brokers (else one per broker), and the
#: replicas that must acknowledge a write (acks=all) then: one broker may fail without data loss.
DEFAULT_REPLICAS = 3
DEFAULT_MIN_INSYNC = 2


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)

    @property
    def compacted(self) -> bool:
        return "compact" in self.config.get("cleanup.policy", "")


def topic_specs(names: TopicNames) -> list[TopicSpec]:
    """Every topic of docs/architecture.md. Compacted topics hold the latest record per key forever."""
    compact = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1"}
    n = names.partitions
    return [
        TopicSpec(
            names.raw,
            n,
            {
                "cleanup.policy": "delete",
                "retention.ms": _WEEK_MS,
                "max.message.bytes": str(RAW_MAX_MESSAGE_BYTES),
            },
        ),
        TopicSpec(names.normalized, n, dict(compact)),
        TopicSpec(
            names.deadletter,
            n,
            {
                "cleanup.policy": "delete",
                "retention.ms": _MONTH_MS,
                "max.message.bytes": str(DEADLETTER_MAX_MESSAGE_BYTES),
            },
        ),
        TopicSpec(names.predictions, n, dict(compact)),
        TopicSpec(names.labels, n, dict(compact)),
        TopicSpec(
            names.annotation_requests, n, {"cleanup.policy": "delete", "retention.ms": _WEEK_MS}
        ),
        TopicSpec(names.model_events, 1, {"cleanup.policy": "delete", "retention.ms": "-1"}),
        TopicSpec(names.judgements, n, dict(compact)),  # similarity judgements (web UI)
        TopicSpec(names.profiles, 1, dict(compact)),  # feed profiles: every normaliser reads all
        # versioned category trees, key = version; every process reads all (streams/taxonomy_store.py)
        TopicSpec(
            names.taxonomy,
            1,
            {**compact, "max.message.bytes": str(TAXONOMY_MAX_MESSAGE_BYTES)},
        ),
        # dead letters already replayed, key = their position (streams/deadletter_replay.py)
        TopicSpec(names.replays, 1, dict(compact)),
        # approved and rejected feed-category mappings, key = feed + feed path (streams/mappings.py)
        TopicSpec(names.mappings, 1, dict(compact)),
        # taxonomy changes (rename, move, merge, split) with their id maps and reports, key =
        # change id, kept forever (streams/taxonomy_changes.py)
        TopicSpec(names.taxonomy_events, 1, {"cleanup.policy": "delete", "retention.ms": "-1"}),
        # labels the firewall holds and people's reviews of them, key = the label's key
        # (streams/firewall.py, the web UI's Review queue)
        TopicSpec(names.suspects, n, dict(compact)),
        # second annotators' labels of double-labelled products, key = product id (web UI)
        TopicSpec(names.second_opinions, n, dict(compact)),
        # web UI sessions ended by a logout, key = session id; every UI replica reads all and
        # refuses their cookies. Kept a week, longer than a session lasts (PRODCAT_UI__SESSION_TTL_S)
        TopicSpec(
            names.revoked_sessions, 1, {"cleanup.policy": "delete", "retention.ms": _WEEK_MS}
        ),
    ]


def ensure_topics(
    kafka: KafkaSettings, specs: list[TopicSpec], timeout_s: float = 30.0
) -> dict[str, str]:
    """Create missing topics; check existing ones against their spec.

    New topics get :func:`durability`'s replicas and ``min.insync.replicas``. Returns
    ``{name: state}``: ``"created"``, ``"exists"``, or ``"exists; <warnings>"`` when an existing
    topic has fewer replicas or a lower ``min.insync.replicas`` than that (durability below what
    was asked for: reported and logged, the topic still works). Raises TopicError when a topic cannot be
    created, or an existing one has fewer partitions than specified (more is accepted: partitions
    only grow), another cleanup policy (a compacted topic that deletes, or the reverse), or a
    smaller ``max.message.bytes`` than its spec (records the stages write would be refused).
    """
    admin = AdminClient(librdkafka_config(kafka))
    try:
        cluster = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise TopicError(f"cannot list topics on {kafka.bootstrap_servers}: {exc}") from exc
    existing = cluster.topics
    replicas, min_insync = durability(kafka, len(cluster.brokers))
    result: dict[str, str] = {}
    missing: list[NewTopic] = []
    present: list[TopicSpec] = []
    for spec in specs:
        if spec.name in existing:
            have = len(existing[spec.name].partitions)
            if have < spec.partitions:
                raise TopicError(
                    f"topic {spec.name} has {have} partitions, expected {spec.partitions}"
                )
            present.append(spec)
        else:
            config = dict(spec.config)
            if min_insync is not None:
                config["min.insync.replicas"] = str(min_insync)
            missing.append(
                NewTopic(
                    spec.name,
                    num_partitions=spec.partitions,
                    replication_factor=replicas,
                    config=config,
                )
            )
    for spec in present:
        warnings = _check_existing(
            admin, (replicas, min_insync), spec, existing[spec.name], timeout_s
        )
        result[spec.name] = "exists" + (f"; {'; '.join(warnings)}" if warnings else "")
    if missing:
        for name, future in admin.create_topics(missing, request_timeout=timeout_s).items():
            try:
                future.result(timeout=timeout_s)
                result[name] = "created"
                logger.info("created topic %s", name)
            except KafkaException as exc:
                if (
                    exc.args
                    and getattr(exc.args[0], "name", lambda: "")() == "TOPIC_ALREADY_EXISTS"
                ):
                    result[name] = "exists"
                    continue
                raise TopicError(f"cannot create topic {name}: {exc}") from exc
    return result


def durability(kafka: KafkaSettings, brokers: int) -> tuple[int, int | None]:
    """(replication factor, min.insync.replicas) of the topics prodcat creates: the settings', else
    3 replicas with 2 in sync, or one replica per broker (and the broker's min.insync.replicas) on
    a cluster of fewer than three brokers."""
    replicas = kafka.replication_factor or max(1, min(DEFAULT_REPLICAS, brokers))
    min_insync = kafka.min_insync_replicas
    if min_insync is None and replicas >= DEFAULT_REPLICAS:
        min_insync = DEFAULT_MIN_INSYNC
    return replicas, min_insync


def _check_existing(
    admin: AdminClient,
    wanted: tuple[int, int | None],
    spec: TopicSpec,
    metadata: Any,
    timeout_s: float,
) -> list[str]:
    """An existing topic against ``spec``: raise on what breaks the stages, return warnings."""
    try:
        future = admin.describe_configs([ConfigResource("topic", spec.name)])
        configs = next(iter(future.values())).result(timeout=timeout_s)
    except KafkaException as exc:
        raise TopicError(f"cannot read the configuration of topic {spec.name}: {exc}") from exc
    value = {name: entry.value for name, entry in configs.items()}
    problems: list[str] = []
    want_policy = set(spec.config.get("cleanup.policy", "delete").split(","))
    have_policy = set((value.get("cleanup.policy") or "delete").split(","))
    if ("compact" in want_policy) != ("compact" in have_policy):
        problems.append(
            f"cleanup.policy={','.join(sorted(have_policy))}, expected "
            f"{spec.config.get('cleanup.policy', 'delete')}"
        )
    want_bytes = spec.config.get("max.message.bytes")
    have_bytes = value.get("max.message.bytes")
    if want_bytes is not None and have_bytes is not None and int(have_bytes) < int(want_bytes):
        problems.append(f"max.message.bytes={have_bytes}, expected at least {want_bytes}")
    if problems:
        raise TopicError(
            f"topic {spec.name} exists with {'; '.join(problems)}: alter it (kafka-configs.sh "
            "--alter --entity-type topics ...) or recreate it, then run `prodcat topics create`"
        )
    warnings: list[str] = []
    want_replicas, least = wanted
    replicas = min((len(p.replicas) for p in metadata.partitions.values()), default=0)
    if replicas < want_replicas:
        warnings.append(
            f"replication factor {replicas} < {want_replicas} (PRODCAT_KAFKA__REPLICATION_FACTOR)"
        )
    isr = value.get("min.insync.replicas")
    if least is not None and isr is not None and int(isr) < least:
        warnings.append(f"min.insync.replicas {isr} < {least} (PRODCAT_KAFKA__MIN_INSYNC_REPLICAS)")
    for warning in warnings:
        logger.warning("topic %s: %s", spec.name, warning)
    return warnings
