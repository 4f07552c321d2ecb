"""RabbitMQ by hand at its best: aiormq (the AMQP layer under aio-pika) with confirms.

Same queue as queuekit's group queue (durable classic queue, ``x-max-priority`` 9).
Producer: persistent messages, PUBLISH_BATCH publishes in flight then all confirms awaited.
Consumer: ``basic_qos(PREFETCH)``, a consumer callback that handles the message and acks it
(no round trip per ack). Producer and consumer use their own channels, at once.
"""

from __future__ import annotations

import asyncio
import uuid

import aiormq
from aiormq import spec
from aiormq.abc import DeliveredMessage

from benchmarks.workload import (
    PREFETCH,
    PUBLISH_BATCH,
    RABBITMQ_URL,
    WARMUP,
    Stopwatch,
    encode,
    handle,
    payload,
    report,
    unique_name,
)


async def produce(channel: aiormq.abc.AbstractChannel, queue: str, count: int) -> None:
    body = payload()
    for first in range(0, count, PUBLISH_BATCH):
        await asyncio.gather(
            *(
                channel.basic_publish(
                    encode(body),
                    routing_key=queue,
                    properties=spec.Basic.Properties(
                        message_id=uuid.uuid4().hex,
                        content_type="application/json",
                        delivery_mode=2,
                    ),
                )
                for _ in range(min(PUBLISH_BATCH, count - first))
            )
        )


async def one_pass(connection: aiormq.abc.AbstractConnection, queue: str, count: int) -> float:
    publisher = await connection.channel(publisher_confirms=True)
    consumer = await connection.channel(publisher_confirms=False)
    await consumer.basic_qos(prefetch_count=PREFETCH)
    done = asyncio.Event()
    handled = 0

    async def on_message(message: DeliveredMessage) -> None:
        nonlocal handled
        handle(message.body)
        assert message.delivery_tag is not None
        await consumer.basic_ack(message.delivery_tag)
        handled += 1
        if handled >= count:
            done.set()

    clock = Stopwatch()
    clock.start()
    ok = await consumer.basic_consume(queue, on_message, no_ack=False)
    await produce(publisher, queue, count)
    await done.wait()
    clock.stop()
    await consumer.basic_cancel(ok.consumer_tag)
    await consumer.close()
    await publisher.close()
    return clock.seconds


async def main(count: int) -> None:
    queue = unique_name("raw")
    connection = await aiormq.connect(RABBITMQ_URL)
    try:
        setup = await connection.channel()
        await setup.queue_declare(
            queue, durable=True, arguments={"x-queue-type": "classic", "x-max-priority": 9}
        )
        try:
            await one_pass(connection, queue, WARMUP)
            report(count, await one_pass(connection, queue, count))
        finally:
            await setup.queue_delete(queue)
    finally:
        await connection.close()


def run(count: int) -> None:
    asyncio.run(main(count))
