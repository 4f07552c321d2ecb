"""FastStream: a subscriber with a no-op handler (its JSON decoding included), acks after it.

RabbitMQ: durable classic queue with ``x-max-priority`` 9 (like queuekit's), publisher
confirms on, ``prefetch_count`` PREFETCH, ``AckPolicy.ACK``; publishes awaited in windows of
PUBLISH_BATCH. Redis: a stream subscriber in a consumer group (``max_records`` PREFETCH),
XADD publishes in windows. Kafka: aiokafka underneath, ``acks="all"`` with idempotence,
``publish_batch`` of PUBLISH_BATCH, manual-commit consumer group acking after the handler.
"""

from __future__ import annotations

import asyncio
from typing import Any

from faststream import AckPolicy

from benchmarks.peers.common import Counter, wait_async
from benchmarks.workload import (
    KAFKA_BOOTSTRAP,
    KAFKA_PARTITIONS,
    PREFETCH,
    PUBLISH_BATCH,
    RABBITMQ_URL,
    REDIS_URL,
    WARMUP,
    Stopwatch,
    payload,
    report,
    unique_name,
)


async def timed(publish_all: Any, counter: Counter, count: int) -> float:
    counter.expect(count)
    clock = Stopwatch()
    clock.start()
    await publish_all(count)
    await wait_async(counter)
    clock.stop()
    return clock.seconds


async def windows(publish_one: Any, count: int) -> None:
    body = payload()
    for first in range(0, count, PUBLISH_BATCH):
        size = min(PUBLISH_BATCH, count - first)
        await asyncio.gather(*(publish_one(body) for _ in range(size)))


async def rabbitmq(count: int) -> float:
    from faststream.rabbit import Channel, RabbitBroker, RabbitQueue

    name = unique_name("faststream")
    queue = RabbitQueue(name, durable=True, arguments={"x-max-priority": 9})
    broker = RabbitBroker(
        RABBITMQ_URL,
        default_channel=Channel(prefetch_count=PREFETCH),
        logger=None,
    )
    counter = Counter()

    @broker.subscriber(queue, ack_policy=AckPolicy.ACK)
    async def handler(body: dict[str, Any]) -> None:
        counter.hit()

    async def publish_all(n: int) -> None:
        await windows(lambda body: broker.publish(body, queue=name, persist=True), n)

    await broker.start()
    try:
        await timed(publish_all, counter, WARMUP)
        return await timed(publish_all, counter, count)
    finally:
        await broker.stop()
        cleanup = RabbitBroker(RABBITMQ_URL, logger=None)
        await cleanup.connect()
        channel = await cleanup._connection.channel()  # type: ignore[union-attr]
        await channel.queue_delete(name)
        await cleanup.stop()


async def redis(count: int) -> float:
    from faststream.redis import RedisBroker, StreamSub

    name = unique_name("faststream")
    broker = RedisBroker(REDIS_URL, logger=None)
    counter = Counter()

    @broker.subscriber(
        stream=StreamSub(name, group="bench", consumer="c1", max_records=PREFETCH),
        ack_policy=AckPolicy.ACK,
    )
    async def handler(body: dict[str, Any]) -> None:
        counter.hit()

    async def publish_all(n: int) -> None:
        body = payload()
        for first in range(0, n, PUBLISH_BATCH):
            # FastStream's documented batching for streams: publishes into one pipeline.
            async with broker._connection.pipeline(transaction=False) as pipe:  # type: ignore[union-attr]
                for _ in range(min(PUBLISH_BATCH, n - first)):
                    await broker.publish(body, stream=name, pipeline=pipe)
                await pipe.execute()

    await broker.start()
    try:
        await timed(publish_all, counter, WARMUP)
        return await timed(publish_all, counter, count)
    finally:
        await broker.stop()
        from redis.asyncio import Redis

        client = Redis.from_url(REDIS_URL)
        await client.delete(name)
        await client.aclose()


async def kafka(count: int) -> float:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from faststream.kafka import KafkaBroker

    name = unique_name("faststream")
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA_BOOTSTRAP)
    await admin.start()
    await admin.create_topics([NewTopic(name, KAFKA_PARTITIONS, 1)])
    broker = KafkaBroker(
        KAFKA_BOOTSTRAP,
        acks="all",
        enable_idempotence=True,
        max_batch_size=1_000_000,  # room for PUBLISH_BATCH messages of 1 KiB
        logger=None,
    )
    counter = Counter()

    @broker.subscriber(
        name,
        group_id=f"{name}.bench",
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.ACK,
        max_records=PREFETCH,
    )
    async def handler(body: dict[str, Any]) -> None:
        counter.hit()

    async def publish_all(n: int) -> None:
        body = payload()
        for first in range(0, n, PUBLISH_BATCH):
            size = min(PUBLISH_BATCH, n - first)
            await broker.publish_batch(*([body] * size), topic=name)

    await broker.start()
    try:
        await timed(publish_all, counter, WARMUP)
        return await timed(publish_all, counter, count)
    finally:
        await broker.stop()
        await admin.delete_topics([name])
        await admin.close()


def run(broker: str, count: int) -> None:
    runners = {"rabbitmq": rabbitmq, "redis": redis, "kafka": kafka}
    report(count, asyncio.run(runners[broker](count)))
