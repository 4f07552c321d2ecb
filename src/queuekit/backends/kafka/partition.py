"""The state a consumer keeps for one assigned Kafka partition."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from confluent_kafka import TopicPartition

from queuekit.backends.kafka.marks import Mark
from queuekit.backends.kafka.offsets import OffsetLedger

if TYPE_CHECKING:
    from queuekit.backends.kafka.delivery import KafkaDelivery

LANE, DELAYED, RETRY = "lane", "delayed", "retry"
"""Roles of a partition: a priority lane, the delay topic, the group's retry topic."""


@dataclass(slots=True, eq=False)
class Partition:
    """One assigned Kafka partition, for the lifetime of that assignment."""

    topic: str
    partition: int
    role: str
    priority: int
    ledger: OffsetLedger = field(default_factory=OffsetLedger)
    buffered: int = 0
    deliveries: set[KafkaDelivery] = field(default_factory=set)
    revoked: bool = False
    paused: bool = False
    # After a crash of the previous owner: its delivered, unsettled records (handled one at
    # a time), the records behind them (held back meanwhile) and the last durable probe.
    suspect: Mark | None = None
    suspects: deque[KafkaDelivery] = field(default_factory=deque)
    held: list[KafkaDelivery] = field(default_factory=list)
    probed: int = -1
    # Offsets up to ``marked`` may be delivered (their mark is durable); a mark up to
    # ``marking`` is on its way.
    marked: int = -1
    marking: int = -1
    mark_done: asyncio.Future[None] | None = None

    @property
    def key(self) -> tuple[str, int]:
        return (self.topic, self.partition)

    def topic_partition(self, offset: int = -1001) -> Any:
        """A ``confluent_kafka.TopicPartition`` of this partition (at ``offset``)."""
        return TopicPartition(self.topic, self.partition, offset)
