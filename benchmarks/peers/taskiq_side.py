"""Taskiq: an async no-op task, kicked in windows of PUBLISH_BATCH, run by an in-process
Receiver (what ``taskiq worker`` runs) with ``max_async_tasks`` PREFETCH, acking after the
task ran (``AcknowledgeType.WHEN_EXECUTED``).

RabbitMQ: taskiq-aio-pika (publisher confirms on its write channel), a classic durable queue
with ``x-max-priority`` 9 bound to its own exchange, ``qos`` PREFETCH. Redis: taskiq-redis's
``RedisStreamBroker`` (XADD, consumer group, XACK), ``xread_count`` PREFETCH.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from taskiq import AsyncBroker
from taskiq.acks import AcknowledgeType
from taskiq.receiver import Receiver

from benchmarks.peers.common import Counter, wait_async
from benchmarks.workload import (
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


def make_broker(kind: str, name: str) -> AsyncBroker:
    if kind == "rabbitmq":
        from taskiq_aio_pika import AioPikaBroker
        from taskiq_aio_pika.exchange import Exchange
        from taskiq_aio_pika.queue import Queue, QueueType

        return AioPikaBroker(
            RABBITMQ_URL,
            qos=PREFETCH,
            exchange=Exchange(name=name),
            task_queues=[Queue(name=name, type=QueueType.CLASSIC, max_priority=9)],
        )
    from taskiq_redis import RedisStreamBroker

    return RedisStreamBroker(REDIS_URL, queue_name=name, xread_count=PREFETCH)


async def main(kind: str, count: int) -> None:
    name = unique_name("taskiq")
    broker = make_broker(kind, name)
    counter = Counter()

    @broker.task(task_name="noop")
    async def noop(body: dict[str, Any]) -> None:
        counter.hit()

    broker.is_worker_process = True  # this process consumes too, like `taskiq worker`
    await broker.startup()
    receiver = Receiver(
        broker,
        max_async_tasks=PREFETCH,
        ack_type=AcknowledgeType.WHEN_EXECUTED,
        run_startup=False,
    )
    finish = asyncio.Event()
    listening = asyncio.create_task(receiver.listen(finish))
    body = payload()

    async def one_round(n: int) -> float:
        counter.expect(n)
        clock = Stopwatch()
        clock.start()
        for first in range(0, n, PUBLISH_BATCH):
            size = min(PUBLISH_BATCH, n - first)
            await asyncio.gather(*(noop.kiq(body) for _ in range(size)))
        await wait_async(counter)
        clock.stop()
        return clock.seconds

    reported = False
    try:
        await one_round(WARMUP)
        report(count, await one_round(count))
        reported = True
    finally:
        finish.set()
        listening.cancel()
        # Not wait_for: on timeout it waits for the cancelled task, which may never end.
        stopping = asyncio.ensure_future(_stop(listening, broker))
        _, pending = await asyncio.wait({stopping}, timeout=SHUTDOWN_LIMIT)
        if pending:
            print(f"taskiq did not stop within {SHUTDOWN_LIMIT:.0f} s", file=sys.stderr)
        await cleanup(kind, name)
        if reported:
            # taskiq-redis sometimes leaves its listener (or tasks it started) ignoring
            # cancellation, and asyncio.run's own shutdown then waits for them forever. The
            # round is reported and cleaned up: leave without that shutdown.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)


SHUTDOWN_LIMIT = 10.0


async def _stop(listening: asyncio.Task[None], broker: AsyncBroker) -> None:
    await asyncio.gather(listening, return_exceptions=True)
    await broker.shutdown()


async def cleanup(kind: str, name: str) -> None:
    if kind == "rabbitmq":
        import aio_pika

        connection = await aio_pika.connect(RABBITMQ_URL)
        channel = await connection.channel()
        await channel.queue_delete(name)
        await channel.exchange_delete(name)
        await connection.close()
    else:
        from redis.asyncio import Redis

        client = Redis.from_url(REDIS_URL)
        await client.delete(name)
        await client.aclose()


def run(broker: str, count: int) -> None:
    if broker not in ("rabbitmq", "redis"):
        raise SystemExit(f"taskiq has no {broker} broker")
    asyncio.run(main(broker, count))
