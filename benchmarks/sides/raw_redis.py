"""Redis Streams by hand at its best (redis-py asyncio, hiredis).

Producer: a non-transactional pipeline of PUBLISH_BATCH ``XADD`` per round trip. Consumer:
``XREADGROUP COUNT PREFETCH BLOCK`` in a consumer group, handle the batch, one ``XACK`` for
the batch. Both run at once on their own connections.
"""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from benchmarks.workload import (
    PREFETCH,
    PUBLISH_BATCH,
    REDIS_URL,
    WARMUP,
    Stopwatch,
    encode,
    handle,
    payload,
    report,
    unique_name,
)

GROUP = "bench"


async def produce(client: Redis, stream: str, count: int) -> None:
    body = payload()
    for first in range(0, count, PUBLISH_BATCH):
        pipe = client.pipeline(transaction=False)
        for _ in range(min(PUBLISH_BATCH, count - first)):
            pipe.xadd(stream, {"payload": encode(body)})
        await pipe.execute()


async def consume(client: Redis, stream: str, count: int) -> None:
    handled = 0
    while handled < count:
        reply = await client.xreadgroup(GROUP, "c1", {stream: ">"}, count=PREFETCH, block=1000)
        for _stream, entries in reply:
            for _entry_id, fields in entries:
                handle(fields[b"payload"])
            await client.xack(stream, GROUP, *(entry_id for entry_id, _ in entries))
            handled += len(entries)


async def one_pass(stream: str, count: int) -> float:
    producer, consumer = Redis.from_url(REDIS_URL), Redis.from_url(REDIS_URL)
    try:
        clock = Stopwatch()
        clock.start()
        await asyncio.gather(consume(consumer, stream, count), produce(producer, stream, count))
        clock.stop()
        return clock.seconds
    finally:
        await producer.aclose()
        await consumer.aclose()


async def main(count: int) -> None:
    stream = unique_name("raw")
    client = Redis.from_url(REDIS_URL)
    await client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    try:
        await one_pass(stream, WARMUP)
        report(count, await one_pass(stream, count))
    finally:
        await client.delete(stream)
        await client.aclose()


def run(count: int) -> None:
    asyncio.run(main(count))
