"""RabbitMQ: raw aio-pika vs queuekit's RabbitMQBroker, same work, same durability.

Each round publishes N 1 KiB JSON messages (persistent, publisher confirms awaited per window
of 1000, to a durable classic queue with x-max-priority 9 like queuekit's group queues), then
consumes them with a no-op handler and an ack after handling (prefetch 256; raw: a consumer
callback acking each message; queuekit: ``async for`` + ``ack``). Rounds of the two
alternate; the table shows the median msgs/s of each phase and the ratios queuekit / raw,
against aio-pika's API and against aiormq (the AMQP layer under it, which queuekit uses).

    scripts/brokers start rabbitmq
    .venv/bin/python benchmarks/bench_rabbitmq.py [--messages 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import aio_pika
import aiormq
import orjson
from aiormq import spec
from aiormq.abc import DeliveredMessage

from queuekit.backends.rabbitmq import RabbitMQBroker
from queuekit.message import Message

URL = "amqp://guest:guest@127.0.0.1:5672/"
PAYLOAD = orjson.dumps({"data": "x" * 1000, "n": 0})  # ~1 KiB of JSON
WINDOW = 1000
PREFETCH = 256


async def raw_round(count: int) -> tuple[float, float]:
    """(publish msgs/s, consume msgs/s) for aio-pika doing it by hand, at its best."""
    name = f"bench-raw-{uuid.uuid4().hex[:8]}"
    connection = await aio_pika.connect(URL)
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(
            name, durable=True, arguments={"x-queue-type": "classic", "x-max-priority": 9}
        )
        exchange = channel.default_exchange

        started = time.perf_counter()
        for first in range(0, count, WINDOW):
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(
                            PAYLOAD,
                            message_id=uuid.uuid4().hex,
                            content_type="application/json",
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        ),
                        routing_key=name,
                    )
                    for _ in range(first, min(count, first + WINDOW))
                )
            )
        published = time.perf_counter() - started

        consumer_channel = await connection.channel(publisher_confirms=False)
        await consumer_channel.set_qos(prefetch_count=PREFETCH)
        consumer_queue = await consumer_channel.get_queue(name)
        done = asyncio.Event()
        handled = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal handled
            orjson.loads(message.body)  # the no-op handler still gets its payload
            await message.ack()
            handled += 1
            if handled >= count:
                done.set()

        started = time.perf_counter()
        tag = await consumer_queue.consume(on_message)
        await done.wait()
        consumed = time.perf_counter() - started
        await consumer_queue.cancel(tag)
        await queue.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()
    return count / published, count / consumed


async def aiormq_round(count: int) -> tuple[float, float]:
    """The same by hand one layer down: aiormq, the AMQP client under aio-pika."""
    name = f"bench-aiormq-{uuid.uuid4().hex[:8]}"
    connection = await aiormq.connect(URL)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.queue_declare(
            name, durable=True, arguments={"x-queue-type": "classic", "x-max-priority": 9}
        )

        started = time.perf_counter()
        for first in range(0, count, WINDOW):
            await asyncio.gather(
                *(
                    channel.basic_publish(
                        PAYLOAD,
                        routing_key=name,
                        properties=spec.Basic.Properties(
                            message_id=uuid.uuid4().hex,
                            content_type="application/json",
                            delivery_mode=2,
                        ),
                        wait=False,
                    )
                    for _ in range(first, min(count, first + WINDOW))
                )
            )
        published = time.perf_counter() - started

        consumer = await connection.channel(publisher_confirms=False)
        await consumer.basic_qos(prefetch_count=PREFETCH)
        done = asyncio.Event()
        handled = 0

        async def on_message(message: DeliveredMessage) -> None:
            nonlocal handled
            orjson.loads(message.body)
            assert message.delivery_tag is not None
            await consumer.basic_ack(message.delivery_tag, wait=False)
            handled += 1
            if handled >= count:
                done.set()

        started = time.perf_counter()
        ok = await consumer.basic_consume(name, on_message, no_ack=False)
        await done.wait()
        consumed = time.perf_counter() - started
        await consumer.basic_cancel(ok.consumer_tag)
        await channel.queue_delete(name)
    finally:
        await connection.close()
    return count / published, count / consumed


async def queuekit_round(count: int) -> tuple[float, float]:
    """(publish msgs/s, consume msgs/s) for queuekit doing the same work."""
    topic = f"bench-qk-{uuid.uuid4().hex[:8]}"
    async with RabbitMQBroker(URL) as broker:
        sub = await broker.subscribe(topic, prefetch=PREFETCH)
        await sub.close()  # the group's queue exists; consume after publishing, like raw

        started = time.perf_counter()
        for first in range(0, count, WINDOW):
            batch = [Message(topic, PAYLOAD) for _ in range(first, min(count, first + WINDOW))]
            await broker.publish(batch)
        published = time.perf_counter() - started

        started = time.perf_counter()
        handled = 0
        async with await broker.subscribe(topic, prefetch=PREFETCH) as sub:
            async for delivery in sub:
                delivery.message.json()  # the no-op handler still gets its payload
                await delivery.ack()
                handled += 1
                if handled >= count:
                    break
        consumed = time.perf_counter() - started
        await broker.purge(topic)
        await _delete_topic(topic)
    return count / published, count / consumed


async def _delete_topic(topic: str) -> None:
    connection = await aio_pika.connect(URL)
    try:
        channel = await connection.channel()
        await channel.queue_delete(f"{topic}:default")
        await channel.exchange_delete(topic)
    finally:
        await connection.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    rounds = {"raw aio-pika": raw_round, "raw aiormq": aiormq_round, "queuekit": queuekit_round}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in rounds}
    for _ in range(args.rounds):
        for name, run in rounds.items():
            results[name].append(await run(args.messages))

    medians = {
        name: (
            statistics.median(p for p, _ in rounds),
            statistics.median(c for _, c in rounds),
        )
        for name, rounds in results.items()
    }
    print(f"RabbitMQ, {args.messages} x 1 KiB JSON, median of {args.rounds} rounds (msgs/s)")
    print(f"{'':14}{'publish':>12}{'consume+ack':>14}")
    for name, (publish, consume) in medians.items():
        print(f"{name:14}{publish:>12,.0f}{consume:>14,.0f}")
    ours = medians["queuekit"]
    for name in ("raw aio-pika", "raw aiormq"):
        raw = medians[name]
        label = "vs " + name.removeprefix("raw ")
        print(f"{label:14}{ours[0] / raw[0]:>12.2f}{ours[1] / raw[1]:>14.2f}")


if __name__ == "__main__":
    asyncio.run(main())
