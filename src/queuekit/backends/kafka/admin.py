"""Topic creation and the :class:`~queuekit.broker.Admin` operations, from Kafka's offsets.

* Lag and depth per group come from committed offsets (Kafka group ``<topic>:<group>``)
  against each partition's end offset, over the priority lanes (depth), the delay topic and
  the group's retry topic (delayed). In-flight counts are known only for consumers of this
  process; elsewhere in-flight messages count as depth until they are committed.
* Purge deletes records (``DeleteRecords``) up to the end of every lane, delay and retry
  partition: every group loses them at once.
* Dead letters are the records of ``<topic>.dlq`` from its log start: listing reads them,
  purge deletes them, and replay produces the chosen ones to the failing group's retry topic
  (attempt 1), re-appends the others, then deletes the records it read.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # both are re-exported
    AdminClient,
    NewTopic,
    OffsetSpec,
)

from queuekit.backends.kafka.errors import is_unavailable, to_broker_error
from queuekit.backends.kafka.naming import (
    RETRY_SUFFIX,
    base_topics,
    delay_topic,
    group_id,
    group_of,
    lane_topics,
    retry_topic,
    topic_family,
)
from queuekit.backends.kafka.producer import MAX_RECORD_BYTES, AsyncProducer
from queuekit.backends.kafka.records import OutRecord, from_record, to_record
from queuekit.broker import GroupStats, TopicStats
from queuekit.errors import BrokerError
from queuekit.message import DEFAULT_GROUP, DeadLetter, dlq_topic, parse_dead_letter

REQUEST_TIMEOUT = 15.0
METADATA_POLL = 0.05  # seconds between metadata requests while the cluster catches up
OFFSET_ATTEMPTS = 6
READ_IDLE_TIMEOUT = 5.0  # seconds without progress before a dead-letter read gives up

Key = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Watermarks:
    low: int
    high: int

    @property
    def size(self) -> int:
        return max(0, self.high - self.low)

    def after(self, committed: int | None) -> int:
        """Records from ``committed`` (or the log start) to the end."""
        start = self.low if committed is None or committed < self.low else committed
        return max(0, self.high - start)


async def _wait(future: Any, what: str) -> Any:
    try:
        return await asyncio.wrap_future(future)
    except KafkaException as exc:
        raise to_broker_error(exc, what) from exc


class KafkaAdmin:
    """Admin requests of one broker connection (an ``AdminClient`` and the producer)."""

    def __init__(self, config: dict[str, Any], producer: AsyncProducer, *, partitions: int) -> None:
        self._config = config
        self._client = AdminClient(config)
        self._producer = producer
        self._partitions = partitions
        self._known: set[str] = set()

    def check(self, timeout: float) -> None:
        """Block until the cluster answers a metadata request (raises KafkaException)."""
        self._client.list_topics(timeout=timeout)

    async def _metadata(self) -> Any:
        """The cluster's metadata (a ``ClusterMetadata``), read off the event loop."""
        try:
            return await asyncio.to_thread(self._client.list_topics, timeout=REQUEST_TIMEOUT)
        except KafkaException as exc:
            raise to_broker_error(exc, "reading cluster metadata") from exc

    async def cluster_topics(self) -> dict[str, list[int]]:
        """Every topic of the cluster and its partition ids."""
        metadata = await self._metadata()
        return {
            name: sorted(topic.partitions)
            for name, topic in metadata.topics.items()
            if topic.error is None
        }

    async def ensure_topics(self, names: Iterable[str]) -> None:
        """Create the topics among ``names`` that this connection has not seen yet."""
        missing = [name for name in dict.fromkeys(names) if name not in self._known]
        if not missing:
            return
        config = {"max.message.bytes": str(MAX_RECORD_BYTES)}
        new = [NewTopic(name, num_partitions=self._partitions, config=config) for name in missing]
        try:
            futures = self._client.create_topics(new, operation_timeout=REQUEST_TIMEOUT)
        except KafkaException as exc:
            raise to_broker_error(exc, "creating topics") from exc
        for name, future in futures.items():
            try:
                await asyncio.wrap_future(future)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise to_broker_error(exc, f"creating topic {name}") from exc
        await self._wait_for_leaders(missing)
        self._known.update(missing)

    def forget_topics(self, names: Iterable[str]) -> None:
        """Forget that ``names`` exist: the next :meth:`ensure_topics` creates them again
        (another client deleted them)."""
        self._known.difference_update(names)

    async def _wait_for_leaders(self, names: list[str]) -> None:
        """Wait until every partition of ``names`` has a leader: right after CreateTopics
        the cluster may still answer "not leader" to offset requests and fetches."""
        deadline = time.monotonic() + REQUEST_TIMEOUT
        while True:
            metadata = await self._metadata()
            pending = [
                name
                for name in names
                if (topic := metadata.topics.get(name)) is None
                or topic.error is not None
                or not topic.partitions
                or any(p.leader < 0 for p in topic.partitions.values())
            ]
            if not pending or time.monotonic() > deadline:
                return
            await asyncio.sleep(METADATA_POLL)

    async def _wait_for_absence(self, names: list[str]) -> None:
        """Wait until the cluster no longer lists ``names``: DeleteTopics answers once the
        deletion is accepted, and a record produced before the brokers applied it would be
        acknowledged and then deleted with the topic."""
        deadline = time.monotonic() + REQUEST_TIMEOUT
        while True:
            remaining = set(names) & set(await self.cluster_topics())
            if not remaining:
                return
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"kafka still lists {sorted(remaining)} "
                    f"{REQUEST_TIMEOUT:g} s after deleting them"
                )
            await asyncio.sleep(METADATA_POLL)

    async def list_topics(self) -> list[str]:
        return base_topics(await self.cluster_topics())

    async def delete_topic(self, topic: str) -> None:
        """Delete ``topic`` with its lanes, delay, retry and dead-letter topics and groups."""
        cluster = await self.cluster_topics()
        family = set(topic_family(topic))
        names = [
            name
            for name in cluster
            if name in family or (name.startswith(topic + ".") and name.endswith(RETRY_SUFFIX))
        ]
        if names:
            futures = self._client.delete_topics(names, operation_timeout=REQUEST_TIMEOUT)
            for future in futures.values():
                try:
                    await asyncio.wrap_future(future)
                except KafkaException as exc:
                    if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                        raise to_broker_error(exc, f"deleting the topics of {topic}") from exc
            await self._wait_for_absence(names)
        self.forget_topics(names)
        groups = [group_id(topic, group) for group in await self.groups_of(topic)]
        if groups:
            futures = self._client.delete_consumer_groups(groups, request_timeout=REQUEST_TIMEOUT)
            for future in futures.values():
                # A group that still has members is kept; it empties when they leave.
                with contextlib.suppress(KafkaException):
                    await asyncio.wrap_future(future)

    async def watermarks(self, keys: Sequence[Key]) -> dict[Key, Watermarks]:
        """Log start and end offsets of ``keys``, in two requests."""
        if not keys:
            return {}

        async def offsets(spec: Any) -> dict[Key, int]:
            # Leadership moves (topic just created, broker restarting) answer "not leader"
            # for a moment: ask again, a bounded number of times.
            for attempt in range(OFFSET_ATTEMPTS):
                request = {TopicPartition(t, p): spec for t, p in keys}
                futures = self._client.list_offsets(request, request_timeout=REQUEST_TIMEOUT)
                try:
                    return {
                        (tp.topic, tp.partition): (await asyncio.wrap_future(f)).offset
                        for tp, f in futures.items()
                    }
                except KafkaException as exc:
                    retriable = exc.args[0].retriable() or is_unavailable(exc)
                    if not retriable or attempt == OFFSET_ATTEMPTS - 1:
                        raise to_broker_error(exc, "listing offsets") from exc
                await asyncio.sleep(METADATA_POLL * (attempt + 1))
            raise AssertionError("unreachable")

        lows = await offsets(OffsetSpec.earliest())  # type: ignore[no-untyped-call]
        highs = await offsets(OffsetSpec.latest())  # type: ignore[no-untyped-call]
        return {key: Watermarks(lows[key], highs[key]) for key in keys}

    async def groups_of(self, topic: str) -> list[str]:
        """The queuekit groups with a Kafka consumer group on ``topic``, sorted."""
        future = self._client.list_consumer_groups(request_timeout=REQUEST_TIMEOUT)
        result = await _wait(future, "listing consumer groups")
        names = (group_of(listing.group_id, topic) for listing in result.valid)
        return sorted(name for name in names if name is not None)

    async def committed(self, topic: str, group: str) -> dict[Key, int]:
        """Committed offsets of ``group`` on ``topic`` (partitions without one are absent)."""
        from confluent_kafka import ConsumerGroupTopicPartitions

        request = [ConsumerGroupTopicPartitions(group_id(topic, group))]
        futures = self._client.list_consumer_group_offsets(request, request_timeout=REQUEST_TIMEOUT)
        result = await _wait(next(iter(futures.values())), "reading committed offsets")
        return {
            (tp.topic, tp.partition): tp.offset
            for tp in result.topic_partitions or ()
            if tp.offset >= 0
        }

    async def members(self, topic: str, groups: Sequence[str]) -> dict[str, int]:
        """Consumers attached to each of ``groups``."""
        if not groups:
            return {}
        ids = [group_id(topic, group) for group in groups]
        futures = self._client.describe_consumer_groups(ids, request_timeout=REQUEST_TIMEOUT)
        counts = {}
        for group, kafka_id in zip(groups, ids, strict=True):
            description = await _wait(futures[kafka_id], "describing consumer groups")
            counts[group] = len(description.members)
        return counts

    async def topic_stats(
        self, topic: str, local_in_flight: dict[str, tuple[int, int]]
    ) -> TopicStats:
        """Stats of ``topic``; ``local_in_flight`` maps groups to (lane, delayed) in flight."""
        cluster = await self.cluster_topics()
        if topic not in cluster:
            return TopicStats(topic)
        groups = await self.groups_of(topic)
        lanes = [t for t in lane_topics(topic) if t in cluster]
        delayed = [t for t in (delay_topic(topic),) if t in cluster]
        retries = {g: t for g in groups if (t := retry_topic(topic, g)) in cluster}
        dlq = [t for t in (dlq_topic(topic),) if t in cluster]
        names = [*lanes, *delayed, *retries.values(), *dlq]
        marks = await self.watermarks([(t, p) for t in names for p in cluster[t]])

        def lag(kafka_topics: Iterable[str], committed: dict[Key, int]) -> int:
            return sum(
                marks[(t, p)].after(committed.get((t, p))) for t in kafka_topics for p in cluster[t]
            )

        stats = []
        consumers = await self.members(topic, groups)
        for group in groups or [DEFAULT_GROUP]:
            committed = await self.committed(topic, group) if groups else {}
            ready = lag(lanes, committed)
            waiting = lag([*delayed, *([retries[group]] if group in retries else [])], committed)
            lanes_busy, delayed_busy = local_in_flight.get(group, (0, 0))
            depth = max(0, ready - lanes_busy)
            later = max(0, waiting - delayed_busy)
            stats.append(
                GroupStats(
                    group=group,
                    depth=depth,
                    in_flight=lanes_busy + delayed_busy,
                    delayed=later,
                    lag=ready + waiting,
                    consumers=consumers.get(group, 0),
                )
            )
        dead = sum(marks[(t, p)].size for t in dlq for p in cluster[t])
        return TopicStats(topic, tuple(stats), dead)

    async def purge(self, topic: str) -> dict[Key, int]:
        """Delete every lane, delay and retry record of ``topic``; return the new log starts."""
        cluster = await self.cluster_topics()
        names = [
            t
            for t in cluster
            if t in lane_topics(topic)
            or t == delay_topic(topic)
            or (t.startswith(topic + ".") and t.endswith(RETRY_SUFFIX))
        ]
        marks = await self.watermarks([(t, p) for t in names for p in cluster[t]])
        targets = {key: mark.high for key, mark in marks.items() if mark.size}
        await self._delete_records(targets)
        return targets

    async def _delete_records(self, targets: dict[Key, int]) -> None:
        if not targets:
            return
        request = [TopicPartition(t, p, offset) for (t, p), offset in targets.items()]
        futures = self._client.delete_records(request, request_timeout=REQUEST_TIMEOUT)
        for future in futures.values():
            await _wait(future, "deleting records")

    async def read_dead_letters(self, topic: str) -> tuple[list[Any], dict[Key, int]]:
        """Every record of ``<topic>.dlq`` now, and the end offsets the read stopped at."""
        dlq = dlq_topic(topic)
        cluster = await self.cluster_topics()
        if dlq not in cluster:
            return [], {}
        marks = await self.watermarks([(dlq, p) for p in cluster[dlq]])
        wanted = {key: mark for key, mark in marks.items() if mark.size}
        if not wanted:
            return [], {}
        records = await asyncio.to_thread(self._read, wanted)
        return records, {key: mark.high for key, mark in wanted.items()}

    def _read(self, wanted: dict[Key, Watermarks]) -> list[Any]:
        consumer = Consumer(
            {
                **self._config,
                "group.id": "queuekit-dlq-reader",
                "enable.auto.commit": False,
                "enable.partition.eof": False,
            }
        )
        try:
            consumer.assign([TopicPartition(t, p, m.low) for (t, p), m in wanted.items()])
            remaining = {key: mark.high for key, mark in wanted.items()}
            records: list[Any] = []
            idle_until = time.monotonic() + READ_IDLE_TIMEOUT
            while remaining and time.monotonic() < idle_until:
                batch: list[Any] = consumer.consume(1000, 0.5)
                for record in batch:
                    if record.error() is not None:
                        continue
                    key: Key = (record.topic(), record.partition())
                    offset: int = record.offset()
                    end = remaining.get(key)
                    if end is None or offset >= end:
                        continue
                    records.append(record)
                    idle_until = time.monotonic() + READ_IDLE_TIMEOUT
                    if offset >= end - 1:
                        del remaining[key]
            if remaining:
                raise to_broker_error(
                    KafkaException(KafkaError(KafkaError._TIMED_OUT)), "reading dead letters"
                )
            return records
        finally:
            consumer.close()

    async def dead_letters(self, topic: str, limit: int) -> list[DeadLetter]:
        records, _ = await self.read_dead_letters(topic)
        letters = [parse_dead_letter(from_record(r, dlq_topic(topic), 0)) for r in records]
        letters.sort(key=lambda letter: letter.dead_lettered_at)
        return letters[:limit]

    async def replay_dead_letters(self, topic: str, ids: Sequence[str] | None) -> int:
        records, ends = await self.read_dead_letters(topic)
        wanted = None if ids is None else set(ids)
        dlq = dlq_topic(topic)
        replayed: list[OutRecord] = []
        kept: list[OutRecord] = []
        retry_topics = set()
        for record in records:
            message = from_record(record, dlq, 0)
            if wanted is not None and message.id not in wanted:
                kept.append(to_record(message, dlq))
                continue
            letter = parse_dead_letter(message)
            target = retry_topic(topic, letter.group)
            retry_topics.add(target)
            fresh = replace(letter.message, attempt=1, not_before=None)
            replayed.append(to_record(fresh, target))
        if not replayed:
            return 0
        await self.ensure_topics(retry_topics)
        await self._producer.send([*replayed, *kept])
        await self._delete_records(ends)
        return len(replayed)

    async def purge_dead_letters(self, topic: str) -> int:
        dlq = dlq_topic(topic)
        cluster = await self.cluster_topics()
        if dlq not in cluster:
            return 0
        marks = await self.watermarks([(dlq, p) for p in cluster[dlq]])
        await self._delete_records({key: mark.high for key, mark in marks.items() if mark.size})
        return sum(mark.size for mark in marks.values())
