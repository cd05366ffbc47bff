"""What the benchmarks share: a fresh local broker, and settings for one worker run."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from prodcat import localkafka
from prodcat.core.settings import LocalKafkaSettings, Settings, TopicNames, WorkerSettings


def fresh_broker(settings: Settings, home: Path, port: int) -> tuple[LocalKafkaSettings, str]:
    """Wipe ``home`` and start a single-node broker on ``port`` (controller on ``port + 1``)."""
    if home.exists():
        shutil.rmtree(home)
    cfg = settings.local_kafka.model_copy(
        update={"home": home / "kafka", "port": port, "controller_port": port + 1}
    )
    return cfg, localkafka.start(cfg).bootstrap


def run_settings(settings: Settings, topics: TopicNames, uid: str, **worker: Any) -> Settings:
    """``settings`` for one worker run: its own topics and consumer group, quick group joins."""
    return settings.model_copy(
        update={
            "topics": topics,
            "worker": WorkerSettings(
                app_id=f"bench-{uid}",
                log_level="WARNING",
                session_timeout_s=6,
                heartbeat_interval_s=1,
                metrics_port=settings.worker.metrics_port,
                **worker,
            ),
        }
    )
