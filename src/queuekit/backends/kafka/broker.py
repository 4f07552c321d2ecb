"""The Kafka broker: publish through the idempotent producer, consume as consumer groups."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from confluent_kafka import KafkaException

from queuekit.backends.kafka.admin import KafkaAdmin
from queuekit.backends.kafka.errors import TopicMissing, to_broker_error
from queuekit.backends.kafka.naming import (
    delay_topic,
    group_id,
    lane_topic,
    retry_topic,
    topic_family,
)
from queuekit.backends.kafka.producer import CLIENT_LOG, AsyncProducer
from queuekit.backends.kafka.records import OutRecord, to_record
from queuekit.backends.kafka.subscription import KafkaSubscription
from queuekit.broker import Admin, Broker, Features, TopicStats
from queuekit.errors import BrokerUnavailable
from queuekit.message import (
    DEFAULT_GROUP,
    DeadLetter,
    Message,
    check_fields,
    validate_group,
    validate_topic,
)

MIN_SESSION_TIMEOUT = 6.0  # Kafka's default group.min.session.timeout.ms


class KafkaBroker(Broker, Admin):
    """Apache Kafka through confluent-kafka (librdkafka).

    Args:
        bootstrap_servers: ``host:port[,host:port...]``.
        partitions: partitions of each topic queuekit creates.
        visibility_timeout: seconds before the messages of a consumer that went away are
            redelivered: the group session timeout (at least Kafka's minimum of 6 s), and the
            grace period in-flight messages get on a rebalance or ``Subscription.close``.
        publish_timeout: seconds a publish may wait for the cluster (``message.timeout.ms``)
            before it fails with :class:`BrokerUnavailable`.
        client_id: the Kafka client id (shows up in broker logs and group descriptions).
    """

    backend: ClassVar[str] = "kafka"
    features: ClassVar[Features] = Features(
        durable=True,
        delayed_delivery=True,
        priorities=True,
        strict_priority=False,
        ordering_per_key=True,
        crash_safe_attempts=True,
        cross_process=True,
    )

    def __init__(
        self,
        bootstrap_servers: str = "127.0.0.1:9092",
        *,
        partitions: int = 3,
        visibility_timeout: float = 30.0,
        publish_timeout: float = 30.0,
        client_id: str = "queuekit",
    ) -> None:
        if not visibility_timeout > 0 or math.isinf(visibility_timeout):
            raise ValueError("visibility_timeout must be a positive number of seconds")
        if not publish_timeout > 0 or math.isinf(publish_timeout):
            raise ValueError("publish_timeout must be a positive number of seconds")
        if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
            raise ValueError("partitions must be a positive integer")
        self.bootstrap_servers = bootstrap_servers
        self.partitions = partitions
        self.visibility_timeout = visibility_timeout
        self.publish_timeout = publish_timeout
        self.client_id = client_id
        self._producer: AsyncProducer | None = None
        self._admin: KafkaAdmin | None = None
        self._subscriptions: set[KafkaSubscription] = set()
        self._used: set[str] = set()

    # ------------------------------------------------------------------ connection

    def _client_config(self) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "reconnect.backoff.max.ms": 1000,
            "logger": CLIENT_LOG,
        }

    def consumer_config(self, topic: str, group: str) -> dict[str, Any]:
        """The librdkafka settings of a consumer of (topic, group)."""
        session = max(MIN_SESSION_TIMEOUT, min(self.visibility_timeout, 300.0))
        return {
            **self._client_config(),
            "group.id": group_id(topic, group),
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "range",
            "session.timeout.ms": int(session * 1000),
            "heartbeat.interval.ms": int(min(1000.0, session * 100)),
            "max.poll.interval.ms": int(max(session, self.visibility_timeout + 60) * 1000),
            "enable.partition.eof": True,
        }

    def _connected(self) -> tuple[AsyncProducer, KafkaAdmin]:
        if self._producer is None or self._admin is None:
            raise BrokerUnavailable("kafka broker is not connected")
        return self._producer, self._admin

    async def connect(self) -> None:
        if self._producer is not None:
            return
        producer = AsyncProducer(
            self.bootstrap_servers, timeout=self.publish_timeout, client_id=self.client_id
        )
        try:
            admin = KafkaAdmin(self._client_config(), producer, partitions=self.partitions)
            await asyncio.to_thread(admin.check, 5.0)
        except KafkaException as exc:
            raise to_broker_error(exc, f"connecting to {self.bootstrap_servers}") from exc
        producer.start()
        self._producer, self._admin = producer, admin

    async def close(self) -> None:
        subscriptions, self._subscriptions = list(self._subscriptions), set()
        await asyncio.gather(*(sub.abort() for sub in subscriptions))
        producer, self._producer, self._admin = self._producer, None, None
        if producer is not None:
            await producer.close()

    async def ping(self) -> None:
        _, admin = self._connected()
        try:
            await asyncio.to_thread(admin.check, 3.0)
        except KafkaException as exc:
            raise to_broker_error(exc, "pinging") from exc

    # ------------------------------------------------------------------ publish / subscribe

    async def publish(self, messages: Sequence[Message]) -> None:
        producer, admin = self._connected()
        topics: set[str] = set()
        records: list[OutRecord] = []
        now = time.time()
        now_ms = int(now * 1000)
        for message in messages:
            topic = message.topic
            if topic not in topics:
                topics.add(validate_topic(topic))
            check_fields(message)
            priority = message.priority
            due = message.not_before
            if due is not None and due > now:
                target = delay_topic(topic)
            elif priority:
                target = lane_topic(topic, priority)
            else:
                target = topic
            records.append(to_record(message, target, now_ms))
        family = [name for topic in topics for name in topic_family(topic)]
        await admin.ensure_topics(family)
        self._used.update(topics)
        try:
            await producer.send(records)
        except TopicMissing:
            # Deleted by another client since this one created it: create it afresh and send
            # again (records that went through already may be delivered twice: at least once).
            admin.forget_topics(family)
            await admin.ensure_topics(family)
            await producer.send(records)

    async def subscribe(
        self, topic: str, group: str = DEFAULT_GROUP, *, prefetch: int = 16
    ) -> KafkaSubscription:
        producer, admin = self._connected()
        validate_topic(topic)
        validate_group(group)
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 1:
            raise ValueError("prefetch must be a positive integer")
        await admin.ensure_topics([*topic_family(topic), retry_topic(topic, group)])
        self._used.add(topic)
        subscription = KafkaSubscription(
            topic=topic,
            group=group,
            prefetch=prefetch,
            consumer_config=self.consumer_config(topic, group),
            producer=producer,
            grace=self.visibility_timeout,
            on_closed=self._subscriptions.discard,
        )
        subscription.start()
        self._subscriptions.add(subscription)
        return subscription

    @property
    def used_topics(self) -> frozenset[str]:
        """The queuekit topics this instance published to or subscribed to."""
        return frozenset(self._used)

    # ------------------------------------------------------------------ Admin

    def _local_in_flight(self, topic: str) -> dict[str, tuple[int, int]]:
        counts: dict[str, tuple[int, int]] = {}
        for sub in self._subscriptions:
            if sub.topic == topic:
                lanes, delayed = sub.local_counts()
                old = counts.get(sub.group, (0, 0))
                counts[sub.group] = (old[0] + lanes, old[1] + delayed)
        return counts

    async def list_topics(self) -> list[str]:
        return await self._connected()[1].list_topics()

    async def delete_topic(self, topic: str) -> None:
        """Delete every Kafka topic and consumer group of ``topic``: its lanes, delay, retry
        and dead-letter topics (see :meth:`Admin.delete_topic`)."""
        _, admin = self._connected()
        await admin.delete_topic(validate_topic(topic))

    async def topic_stats(self, topic: str) -> TopicStats:
        _, admin = self._connected()
        return await admin.topic_stats(validate_topic(topic), self._local_in_flight(topic))

    async def purge(self, topic: str) -> int:
        _, admin = self._connected()
        stats = await admin.topic_stats(validate_topic(topic), self._local_in_flight(topic))
        positions = await admin.purge(topic)
        for sub in self._subscriptions:
            if sub.topic == topic:
                sub.forget_before(positions)
        return sum(group.depth + group.delayed for group in stats.groups)

    async def dead_letters(self, topic: str, limit: int = 100) -> list[DeadLetter]:
        _, admin = self._connected()
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError("limit must be a non-negative integer")
        return await admin.dead_letters(validate_topic(topic), limit)

    async def replay_dead_letters(self, topic: str, ids: Sequence[str] | None = None) -> int:
        _, admin = self._connected()
        return await admin.replay_dead_letters(validate_topic(topic), ids)

    async def purge_dead_letters(self, topic: str) -> int:
        _, admin = self._connected()
        return await admin.purge_dead_letters(validate_topic(topic))
