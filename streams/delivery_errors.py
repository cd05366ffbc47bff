"""Which failures of a send (or of a stage's ``process``) are worth retrying, and which are not.

::

    retry       TransientError (ours); a KafkaError whose ``retriable`` is set (NotLeader...,
                NotEnoughReplicas, RequestTimedOut, connection errors); timeouts
    rebuild     the idempotent producer is in a fatal state (OutOfOrderSequenceNumber,
                InvalidProducerEpoch, ProducerFenced): a new producer, then retry
    permanent   everything else: MessageSizeTooLarge / RecordTooLarge, authorisation failures,
                InvalidTopic, UnsupportedVersion, UnknownTopicOrPartition once the metadata was
                refreshed ``UNKNOWN_TOPIC_TRIES`` times, or at once as :class:`MissingTopicError`
                (the broker answered several metadata requests without the topic); and any
                exception that is not a Kafka or transient error (a bug)

A permanent failure is never retried: the runtime dead-letters the input it belongs to
(:mod:`prodcat.streams.runtime`).
"""

from __future__ import annotations

import asyncio
from enum import Enum

from aiokafka.errors import (
    InvalidProducerEpoch,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownTopicOrPartitionError,
)

from prodcat.core.errors import TransientError

__all__ = ["UNKNOWN_TOPIC_TRIES", "MissingTopicError", "Verdict", "classify"]

#: An unknown topic may be a metadata refresh away (a topic just created): this many tries.
UNKNOWN_TOPIC_TRIES = 3

_TIMEOUTS = (KafkaTimeoutError, KafkaConnectionError, asyncio.TimeoutError, TimeoutError)
_FATAL_PRODUCER = (OutOfOrderSequenceNumber, InvalidProducerEpoch, ProducerFenced)


class MissingTopicError(UnknownTopicOrPartitionError):  # type: ignore[misc]  # aiokafka is untyped
    """The broker answered metadata requests over a few seconds and none had the topic: it does
    not exist (and the brokers do not create topics on first use). Permanent at once."""

    retriable = False

    def __init__(self, topic: str) -> None:
        super().__init__(
            f"topic {topic!r} does not exist; create it (`prodcat topics create`) or fix the "
            "topic name in the settings (PRODCAT_TOPICS__...)"
        )
        self.topic = topic

    def __str__(self) -> str:
        return str(self.args[0])


class Verdict(Enum):
    RETRY = "retry"
    REBUILD = "rebuild"
    PERMANENT = "permanent"


def classify(exc: BaseException, tries: int = 0) -> Verdict:
    """What to do about ``exc`` after ``tries`` earlier failed tries (see the module doc)."""
    if isinstance(exc, TransientError):
        return Verdict.RETRY
    if isinstance(exc, _FATAL_PRODUCER):
        return Verdict.REBUILD
    if isinstance(exc, MissingTopicError):
        return Verdict.PERMANENT
    if isinstance(exc, UnknownTopicOrPartitionError):
        return Verdict.RETRY if tries + 1 < UNKNOWN_TOPIC_TRIES else Verdict.PERMANENT
    if isinstance(exc, _TIMEOUTS):
        return Verdict.RETRY
    if isinstance(exc, KafkaError) and bool(getattr(exc, "retriable", False)):
        return Verdict.RETRY
    return Verdict.PERMANENT
