"""Which input offsets a stage may commit: consumed, minus the inputs it still holds.

Per assigned partition: the next offset after the last consumed record, and the offsets of inputs
the stage left unanswered (``Outputs.held``). The commit point is the oldest held offset, or the
next offset when nothing is held, so a crash or a rebalance re-delivers every held input.
A revoked partition's progress is dropped: its new owner starts from the last commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from aiokafka import TopicPartition

from prodcat.streams.stage import Position


class PartitionProgress:
    """One assignment of one partition (a new object after every re-assignment)."""

    __slots__ = ("committed", "held", "next_offset")

    def __init__(self) -> None:
        self.next_offset: int | None = None
        self.committed: int | None = None
        self.held: set[int] = set()

    def commit_point(self) -> int | None:
        return min(self.held) if self.held else self.next_offset


class Progress:
    """Progress of every assigned partition of one stage."""

    def __init__(self) -> None:
        self.partitions: dict[TopicPartition, PartitionProgress] = {}
        self.held_total = 0

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self.partitions.setdefault(tp, PartitionProgress())

    def revoke(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            gone = self.partitions.pop(tp, None)
            if gone is not None:
                self.held_total -= len(gone.held)

    def snapshot(
        self, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, PartitionProgress]:
        """The current assignment objects of ``partitions``: updates for a batch go to these only,
        so a batch that straddles a rebalance cannot touch a later assignment's progress."""
        return {tp: part for tp in partitions if (part := self.partitions.get(tp)) is not None}

    def consumed(self, part: PartitionProgress, next_offset: int) -> None:
        if part.next_offset is None or next_offset > part.next_offset:
            part.next_offset = next_offset

    def hold(self, owners: Mapping[TopicPartition, PartitionProgress], pos: Position) -> None:
        part = owners.get(TopicPartition(pos.topic, pos.partition))
        if part is not None and pos.offset not in part.held:
            part.held.add(pos.offset)
            self.held_total += 1

    def release(self, pos: Position) -> None:
        part = self.partitions.get(TopicPartition(pos.topic, pos.partition))
        if part is not None and pos.offset in part.held:
            part.held.discard(pos.offset)
            self.held_total -= 1

    def to_commit(self) -> dict[TopicPartition, int]:
        """Offsets that moved since the last commit."""
        out = {}
        for tp, part in self.partitions.items():
            point = part.commit_point()
            if point is not None and point != part.committed:
                out[tp] = point
        return out

    def committed(self, offsets: Mapping[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            part = self.partitions.get(tp)
            if part is not None:
                part.committed = offset

    def over(self, limit: int) -> set[TopicPartition]:
        """Partitions holding ``limit`` inputs or more (their fetching pauses)."""
        return {tp for tp, part in self.partitions.items() if len(part.held) >= limit}
