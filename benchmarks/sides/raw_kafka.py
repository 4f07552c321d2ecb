"""Kafka by hand at its best: confluent-kafka, idempotent producer with acks=all.

Producer thread: ``produce`` a batch of PUBLISH_BATCH messages (librdkafka batches them on the
wire), then ``flush`` (every delivery report of the batch awaited) before the next batch: the
same "a batch is durable before the next is sent" as every other side, raw or queuekit.
Consumer thread: in a consumer group, ``consume`` batches of up to PREFETCH records, handle
them, commit the batch's offsets asynchronously (after handling). The consumer has joined its
group and seen the warm-up before the clock starts.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from benchmarks.workload import (
    KAFKA_BOOTSTRAP,
    KAFKA_PARTITIONS,
    PREFETCH,
    PUBLISH_BATCH,
    WARMUP,
    Stopwatch,
    encode,
    handle,
    payload,
    report,
    unique_name,
)


def produce(producer: Producer, topic: str, count: int) -> None:
    failures: list[object] = []
    body = payload()

    def on_delivery(error: object, _record: object) -> None:
        if error is not None:
            failures.append(error)

    for sent in range(count):
        while True:
            try:
                producer.produce(
                    topic,
                    encode(body),
                    headers=[("id", uuid.uuid4().hex.encode())],
                    on_delivery=on_delivery,
                )
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
        if (sent + 1) % PUBLISH_BATCH == 0:
            producer.flush()
    producer.flush()
    if failures:
        raise RuntimeError(f"{len(failures)} publishes failed: {failures[:3]}")


def consume(consumer: Consumer, count: int) -> None:
    handled = 0
    while handled < count:
        records = [r for r in consumer.consume(PREFETCH, 0.005) if r.error() is None]
        for record in records:
            handle(record.value())
        if records:
            consumer.commit(asynchronous=True)
        handled += len(records)


def one_pass(producer: Producer, consumer: Consumer, topic: str, count: int) -> float:
    clock = Stopwatch()
    clock.start()
    reader = threading.Thread(target=consume, args=(consumer, count))
    reader.start()
    produce(producer, topic, count)
    reader.join()
    clock.stop()
    return clock.seconds


@contextmanager
def fresh_topic(prefix: str, **producer_settings: Any) -> Iterator[tuple[str, Any, Any]]:
    """A new topic of KAFKA_PARTITIONS partitions with a producer (acks=all, idempotent; plus
    ``producer_settings``) and a consumer subscribed in its own group; deleted afterwards."""
    topic = unique_name(prefix)
    admin = AdminClient({"bootstrap.servers": KAFKA_BOOTSTRAP})
    for future in admin.create_topics([NewTopic(topic, num_partitions=KAFKA_PARTITIONS)]).values():
        future.result()
    producer = Producer(
        {
            "bootstrap.servers": KAFKA_BOOTSTRAP,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            "batch.num.messages": 10000,
            **producer_settings,
        }
    )
    consumer = Consumer(
        {
            "bootstrap.servers": KAFKA_BOOTSTRAP,
            "group.id": f"{topic}.bench",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    try:
        yield topic, producer, consumer
    finally:
        consumer.close()
        producer.flush(10)
        for future in admin.delete_topics([topic]).values():
            future.result()


def run(count: int) -> None:
    with fresh_topic("raw") as (topic, producer, consumer):
        one_pass(producer, consumer, topic, WARMUP)
        report(count, one_pass(producer, consumer, topic, count))
